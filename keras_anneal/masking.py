"""Pure mask maths: which weights to keep, given scores and a target.

Nothing here touches Keras. Masks are NumPy arrays of 0.0 (pruned) and 1.0
(kept); scores are NumPy arrays of the same shape where larger means more
worth keeping (for magnitude pruning, `|w|`).

Rounding: at target sparsity `s`, a group of `n` weights has exactly
`floor(s * n)` pruned weights, so the achieved sparsity never exceeds the
target and, since `s < 1`, at least one weight is always kept.

Ties: among weights of equal score, the one with the lower flat (row-major)
index is kept; in global ranking, layers are concatenated in model order.

Pruning is cumulative: a weight whose mask is already 0 stays pruned, and the
pruned count never goes down even if the target does.
"""

import math

import numpy as np

from keras_anneal import _validation


def pruned_count(sparsity, size):
    """Number of weights pruned out of `size` at `sparsity`: `floor(s * n)`.

    A tolerance of `1e-12 * n` absorbs the representation error of `s`, so
    that `pruned_count(0.29, 100)` is 29 and not 28.

    Example:

    >>> pruned_count(0.9, 25)
    22
    """
    return min(size, math.floor(sparsity * size + 1e-12 * size))


def count_pruned(masks):
    """`(pruned, total)` over a list of 0/1 masks.

    Example:

    >>> count_pruned([np.array([0.0, 1.0, 1.0]), np.zeros((2, 2))])
    (5, 7)
    """
    total = sum(int(np.size(mask)) for mask in masks)
    return total - sum(int(np.count_nonzero(mask)) for mask in masks), total


def check_finite_scores(score, kept, where):
    """Raises `ValueError` if a kept weight's score is NaN or infinite."""
    if not np.all(np.isfinite(score[kept])):
        bad = int(np.count_nonzero(~np.isfinite(score[kept])))
        raise ValueError(
            f"Scores of {where} hold {bad} non-finite values (NaN or inf) among the "
            "kept weights; masks are never computed from them. "
            "Received: a diverged weight or score."
        )


# `unit_axes` of a kernel whose units are its second-to-last axis alone: a
# transposed convolution's `(..., filters, in_channels)`.
UNITS_BEFORE_LAST = -1


def unit_count(shape, unit_axes=1):
    """Output units of a weight tensor of `shape`: the size of its last
    `unit_axes` axes, of its second-to-last one for `UNITS_BEFORE_LAST`, 0
    for a tensor of fewer than 2 axes or `unit_axes` 0 (units unknown).

    >>> unit_count((3, 3, 8, 16)), unit_count((3, 3, 8, 16), UNITS_BEFORE_LAST), unit_count((4,))
    (16, 8, 0)
    """
    if len(shape) < 2 or unit_axes == 0:
        return 0
    if unit_axes == UNITS_BEFORE_LAST:
        return int(shape[-2])
    return math.prod(shape[len(shape) - unit_axes:])


def unit_anchors(scores, kept, unit_axes=1):
    """Boolean array: each connected unit's best kept weight, the one to keep.

    A unit is an index of the last `unit_axes` axes (a Dense kernel's
    column, a convolution's filter; the second-to-last axis for
    `UNITS_BEFORE_LAST`); a connected unit has at least one kept weight. Its
    anchor is the kept weight of largest score (ties to the lower index):
    never pruning anchors keeps every connected unit connected. Tensors of
    fewer than 2 axes, or with `unit_axes` 0 (units unknown), have none.

    Example:

    >>> scores = np.array([[3.0, 0.1], [1.0, 0.2]])
    >>> unit_anchors(scores, np.array([[False, True], [True, True]])).tolist()
    [[False, False], [True, True]]
    """
    scores = np.asarray(scores, dtype=np.float64)
    kept = np.asarray(kept, dtype=bool)
    if unit_axes == UNITS_BEFORE_LAST and kept.ndim >= 2:
        swapped = unit_anchors(np.swapaxes(scores, -1, -2), np.swapaxes(kept, -1, -2), 1)
        return np.swapaxes(swapped, -1, -2)
    anchors = np.zeros(kept.shape, dtype=bool)
    if kept.ndim < 2 or unit_axes <= 0:
        return anchors
    width = math.prod(kept.shape[kept.ndim - unit_axes:])
    units = np.where(kept, scores, -np.inf).reshape(-1, width)
    best = np.argmax(units, axis=0)  # Lowest index among ties.
    connected = kept.reshape(-1, width).any(axis=0)
    anchors.reshape(-1, width)[best[connected], np.flatnonzero(connected)] = True
    return anchors


def keep_largest(scores, n_keep):
    """Boolean array keeping the `n_keep` largest scores, ties to lower index.

    Uses a selection (`np.partition`, linear time), not a full sort.

    Args:
        scores: 1-D float array.
        n_keep: number of entries to keep, `0 <= n_keep <= scores.size`.

    Returns:
        A boolean array of the same shape with exactly `n_keep` True entries.
    """
    size = scores.size
    if n_keep >= size:
        return np.ones(size, dtype=bool)
    if n_keep <= 0:
        return np.zeros(size, dtype=bool)
    threshold = np.partition(scores, size - n_keep)[size - n_keep]
    keep = scores > threshold
    ties = np.flatnonzero(scores == threshold)[: n_keep - np.count_nonzero(keep)]
    keep[ties] = True
    return keep


def masks_from_scores(scores, masks, sparsity, scope="layer"):
    """New masks keeping the weights of largest score at `sparsity`.

    A weight whose mask is already 0 gets score `-inf`, so it never comes
    back; each group (a weight tensor, or all of them for `scope="global"`)
    ends with exactly `max(floor(s * n), already pruned)` pruned weights.

    Args:
        scores: list of float arrays, one per prunable weight; larger means
            more worth keeping. Must be finite where the mask is 1.
        masks: list of current 0/1 masks, same shapes as `scores`.
        sparsity: target sparsity in [0, 1).
        scope: `"layer"` ranks each weight tensor on its own; `"global"`
            ranks all of them together (as FSA ranks all variables).

    Returns:
        A list of new 0/1 masks (float32), same shapes as `scores`.

    Raises:
        ValueError: if a kept weight's score is NaN or infinite: a mask is
            never computed from a diverged weight.

    Example:

    >>> masks_from_scores([np.array([3.0, 1.0, 2.0, 0.5])], [np.ones(4)], 0.5)[0]
    array([1., 0., 1., 0.], dtype=float32)
    """
    _validation.check_choice("scope", scope, ("layer", "global"))
    flat = []
    for index, (score, mask) in enumerate(zip(scores, masks)):
        score = np.array(score, dtype=np.float64).ravel()  # A copy: safe to write.
        kept = np.asarray(mask).ravel() != 0
        check_finite_scores(score, kept, f"weight tensor {index}")
        score[~kept] = -np.inf
        flat.append(score)
    groups = [np.concatenate(flat)] if scope == "global" else flat
    kept = []
    for score in groups:
        already_pruned = int(np.count_nonzero(np.isneginf(score)))
        n_pruned = max(pruned_count(sparsity, score.size), already_pruned)
        kept.append(keep_largest(score, score.size - n_pruned))
    if scope == "global":
        kept = np.split(kept[0], np.cumsum([s.size for s in flat])[:-1])
    return [
        keep.reshape(np.shape(score)).astype(np.float32)
        for keep, score in zip(kept, scores)
    ]


def magnitude_masks(weights, masks, sparsity, scope="layer"):
    """New masks keeping the weights of largest magnitude at `sparsity`.

    `masks_from_scores` with `score = |w|`.

    Example:

    >>> w = [np.array([[0.1, -2.0], [0.5, 0.3]])]
    >>> magnitude_masks(w, [np.ones((2, 2))], 0.5)[0]
    array([[0., 1.],
           [1., 0.]], dtype=float32)
    """
    return masks_from_scores([np.abs(w) for w in weights], masks, sparsity, scope)


def n_of_m_masks(scores, masks, n, m):
    """N:M masks: in every block of `m` consecutive inputs of a unit, the `n` best kept.

    Blocks run along the second-to-last axis (a Dense kernel's inputs, a
    convolution's input channels), as NVIDIA's 2:4 sparse tensor cores and
    tfmot's `sparsity_m_by_n` expect. Pruning stays cumulative: a pruned
    weight is never brought back, so a block may keep fewer than `n`.
    Tensors of fewer than 2 axes, or whose input axis is not a multiple of
    `m`, are left as they are.

    Example:

    >>> w = np.array([[0.1], [-3.0], [2.0], [0.5]])
    >>> n_of_m_masks([np.abs(w)], [np.ones_like(w)], 2, 4)[0].ravel()
    array([0., 1., 1., 0.], dtype=float32)
    """
    new_masks = []
    for score, mask in zip(scores, masks):
        mask = np.asarray(mask, dtype=np.float32)
        if mask.ndim < 2 or mask.shape[-2] % m:
            new_masks.append(mask.copy())
            continue
        moved = np.moveaxis(np.asarray(score, dtype=np.float64), -2, -1)
        kept = np.moveaxis(mask, -2, -1) != 0
        blocks = np.where(kept, moved, -np.inf).reshape(-1, m)
        # Rank within each block: the n largest (ties to the lower index) stay.
        order = np.argsort(-blocks, axis=1, kind="stable")
        keep = np.zeros_like(blocks, dtype=bool)
        np.put_along_axis(keep, order[:, :n], True, axis=1)
        keep &= kept.reshape(-1, m)
        new_masks.append(np.moveaxis(keep.reshape(moved.shape), -1, -2).astype(np.float32))
    return new_masks
