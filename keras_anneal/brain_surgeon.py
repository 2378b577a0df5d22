"""Layer-wise Optimal Brain Surgeon (L-OBS, Dong et al. 2017): pure NumPy maths.

For a Dense layer with kernel `W` (d x k) and bias `b`, and its inputs `X`
(n x d) on calibration data, `x~ = [x, 1]` and the Hessian of the layer's
reconstruction error is `H = (1/n) sum x~ x~^T`, damped by `damping` times
its mean diagonal. Removing weight `w_qj` (input q of output unit j) costs
about `L_qj = w_qj^2 / (2 [H^-1]_qq)`; the surviving weights of unit j (and
its bias) compensate by `dw_j = -(w_qj / [H^-1]_qq) H^-1[:, q]`.

Weights are chosen in rounds of `refresh` (Braunstein et al. used 2,000): each round
removes the kept weights of smallest `L` and moves the weights by their OBS
steps, so that the next round ranks compensated weights. The steps use the
full `H^-1`, which ignores the constraint that earlier removals stay at zero,
so they only guide the choice: the weights written are each unit's
least-squares reconstruction of its original output from its kept inputs
(ridge-damped by `damping`), `w_K = H_KK^-1 H_K: w_0`, the point OBS steps toward (Frantar & Alistarh
2022 compute it row by row). Plain removal of the same weights is a feasible
point of that problem, so the reconstruction error is never worse than it.

Cost: `H^-1` once (`d^3`), each round `k d^2`, and the refit `sum_j |K_j|^3 / 3`
over units j with `|K_j|` kept inputs: for LeNet-300-100's first layer at
50% (d = 785, k = 300) about 6e9 flops; for a 4096 x 4096 layer at 50%,
about 1e13, where OBC's shared Cholesky factor would be needed.
"""

import numpy as np

from keras_anneal import masking


def hessian(inputs, damping):
    """`(1/n) sum x~ x~^T + damping * mean(diag) * I` with `x~ = [x, 1]`."""
    x = np.asarray(inputs, dtype=np.float64).reshape(-1, np.shape(inputs)[-1])
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    h = x.T @ x / len(x)
    h[np.diag_indices_from(h)] += damping * np.mean(np.diag(h))
    return h


def prune_dense(kernel, bias, mask, inputs, sparsity, damping=1e-3, refresh=2000):
    """L-OBS on one Dense kernel: `(new_mask, new_kernel, new_bias)`.

    Exactly `max(floor(s * n), already pruned)` of the kernel's `n` weights
    end pruned; already pruned weights stay pruned. `bias` may be None.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(64, 4))
    >>> w = np.random.default_rng(1).normal(size=(4, 3))
    >>> mask, w2, b2 = prune_dense(w, np.zeros(3), np.ones((4, 3)), x, 0.5)
    >>> int(mask.sum())
    6
    """
    d, k = kernel.shape
    has_bias = bias is not None
    h = hessian(inputs, damping)
    if not has_bias:
        h = h[:d, :d]
    h_inv = np.linalg.inv(h)
    diag = np.diag(h_inv)[:d]
    mask = np.array(mask, dtype=bool)  # A copy: the caller's mask is left alone.
    original = np.concatenate(
        [kernel * mask, bias[None, :]] if has_bias else [kernel * mask], axis=0
    ).astype(np.float64)
    weights = original.copy()
    target = max(masking.pruned_count(sparsity, d * k), int(np.count_nonzero(~mask)))
    while np.count_nonzero(~mask) < target:
        count = min(refresh, target - int(np.count_nonzero(~mask)))
        saliency = np.where(mask, weights[:d] ** 2 / (2 * diag[:, None]), np.inf)
        removed = masking.keep_largest(-saliency.ravel(), count).reshape(d, k)
        # Each removal's OBS step, summed over the round.
        steps = np.zeros_like(weights)
        steps[:d][removed] = weights[:d][removed] / diag[:, None].repeat(k, axis=1)[removed]
        weights -= h_inv[:, :d] @ steps[:d]
        mask &= ~removed
        weights[:d][~mask] = 0.0
    weights = _refit(h, original, mask, has_bias)
    weights[:d][~mask] = 0.0
    new_bias = weights[d].astype(bias.dtype) if has_bias else None
    return mask.astype(np.float32), weights[:d].astype(kernel.dtype), new_bias


def _refit(h, original, mask, has_bias):
    """Per unit, the least-squares reconstruction of `x~ . w0` from its kept inputs."""
    d, k = mask.shape
    refit = np.zeros_like(original)
    for j in range(k):
        kept = np.flatnonzero(mask[:, j])
        if has_bias:
            kept = np.append(kept, d)
        if kept.size:
            refit[kept, j] = np.linalg.solve(h[np.ix_(kept, kept)], h[kept] @ original[:, j])
    return refit


def reconstruction_error(inputs, kernel, bias, new_kernel, new_bias):
    """Mean squared difference of the layer's pre-activations, before and after."""
    x = np.asarray(inputs, dtype=np.float64).reshape(-1, np.shape(inputs)[-1])
    before = x @ kernel + (0 if bias is None else bias)
    after = x @ new_kernel + (0 if new_bias is None else new_bias)
    return float(np.mean((before - after) ** 2))
