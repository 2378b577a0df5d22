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


def magnitude_masks(weights, masks, sparsity, scope="layer"):
    """New masks keeping the weights of largest magnitude at `sparsity`.

    `score = |w|` for kept weights and `-inf` for pruned ones, so a pruned
    weight never comes back; each group (a layer, or all layers for
    `scope="global"`) ends with exactly `max(floor(s * n), already pruned)`
    pruned weights.

    Args:
        weights: list of float arrays, one per prunable weight.
        masks: list of current 0/1 masks, same shapes as `weights`.
        sparsity: target sparsity in [0, 1).
        scope: `"layer"` ranks each weight tensor on its own; `"global"`
            ranks all of them together (as FSA ranks all variables).

    Returns:
        A list of new 0/1 masks (float32), same shapes as `weights`.

    Example:

    >>> w = [np.array([[0.1, -2.0], [0.5, 0.3]])]
    >>> magnitude_masks(w, [np.ones((2, 2))], 0.5)[0]
    array([[0., 1.],
           [1., 0.]], dtype=float32)
    """
    scores = []
    for weight, mask in zip(weights, masks):
        score = np.abs(np.asarray(weight)).ravel()  # A new array: safe to write.
        score[np.asarray(mask).ravel() == 0] = -np.inf
        scores.append(score)
    if scope == "global":
        groups = [np.concatenate(scores)]
    else:
        groups = scores
    kept = []
    for score in groups:
        already_pruned = int(np.count_nonzero(np.isneginf(score)))
        n_pruned = max(pruned_count(sparsity, score.size), already_pruned)
        kept.append(keep_largest(score, score.size - n_pruned))
    if scope == "global":
        kept = np.split(kept[0], np.cumsum([s.size for s in scores])[:-1])
    return [
        keep.reshape(np.shape(weight)).astype(np.float32)
        for keep, weight in zip(kept, weights)
    ]
