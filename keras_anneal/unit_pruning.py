"""Whole-unit pruning by significance (N2PS), for chains of Dense layers.

Augasta & Kathirvalavakumar (2011), "A novel pruning algorithm for optimizing
feedforward neural network of classification problems", as Braunstein et al. use it: a hidden
unit's significance comes from its activations on calibration data; the
least significant units are removed whole. Here the significance of unit `j`
of a layer is its average contribution to the next layer, normalized over
the layer:

    s_j = mean_p |a_pj| * sum_k |v_jk|,      s^_j = s_j / sum_i s_i

(`a_pj`: its activation on sample `p`; `v_jk`: its kept outgoing weights).
Removing a unit masks every weight into it and out of it, and sets its bias
to zero, so the layer can later be compacted. The pure maths is here; the
Keras side is `keras_anneal.prune(model, "n2ps", sparsity, data=x)`.
"""

import math

import numpy as np

from keras_anneal import masking


def unit_significance(activations, outgoing_kernel):
    """Normalized significance `s^_j` of each unit (see the module docstring).

    Args:
        activations: array `(samples, units)`, the layer's outputs.
        outgoing_kernel: array `(units, next_units)`, the next layer's kernel
            times its mask.

    Returns:
        A float64 array of `units` values summing to 1 (all zeros if every
        contribution is zero).

    Example:

    >>> a = np.array([[1.0, 0.0], [3.0, 2.0]])   # mean |a| = 2, 1
    >>> v = np.array([[1.0, -1.0], [0.5, 0.5]])  # sum |v| = 2, 1
    >>> unit_significance(a, v)                  # 4 and 1, normalized
    array([0.8, 0.2])
    """
    activations = np.asarray(activations, dtype=np.float64)
    contribution = np.mean(np.abs(activations), axis=0) * np.sum(
        np.abs(np.asarray(outgoing_kernel, dtype=np.float64)), axis=1
    )
    total = contribution.sum()
    return contribution / total if total > 0 else contribution


def units_to_remove(significance, alive, sparsity):
    """Boolean array of the units to remove so that `floor(s * units)` are gone.

    Units already dead (`alive` False) count as removed and stay removed;
    among the live ones the least significant go, ties to the lower index.

    Example:

    >>> units_to_remove(np.array([0.5, 0.1, 0.3, 0.1]), np.ones(4, bool), 0.5)
    array([False,  True, False,  True])
    """
    alive = np.asarray(alive, dtype=bool)
    n_remove = max(math.floor(sparsity * alive.size + 1e-12 * alive.size), int((~alive).sum()))
    n_remove = min(n_remove, alive.size - 1)  # A layer always keeps a unit.
    order = np.lexsort((np.arange(alive.size), np.where(alive, significance, -np.inf)))
    remove = np.zeros(alive.size, dtype=bool)
    remove[order[:n_remove]] = True
    return remove


def unit_masks(scores, masks, sparsity, unit_axes=None, groups=None):
    """Masks removing whole output units: `floor(s * units)` per tensor.

    A unit (an index of the last `unit_axes` axes: a Dense unit, a
    convolution filter) scores the sum of its kept weights' scores (with
    `|w|`, the L1 norm of its incoming weights); the lowest-scoring units
    lose every incoming weight. Units already dead stay dead and count;
    every tensor keeps at least one unit. Tensors of fewer than 2 axes are
    left as they are.

    `groups` couples units across tensors (the channels a residual add makes
    one, `keras_anneal.channel_dependencies`): per tensor, an id per unit, or
    None. Coupled units are ranked by their group's score,
    `sum over members of score_j / mean(scores of the member tensor's live units)`, so
    that layers coupled one to one lose the same units and `compact` can
    delete them.

    Example:

    >>> w = np.array([[1.0, 0.1, 2.0], [1.0, 0.2, -3.0]])  # 3 units, L1 2, 0.3, 5
    >>> unit_masks([np.abs(w)], [np.ones_like(w)], 0.34)[0]
    array([[1., 0., 1.],
           [1., 0., 1.]], dtype=float32)
    """
    unit_axes = unit_axes or [1] * len(scores)
    groups = groups or [None] * len(scores)
    tensors = []  # (flat mask, unit scores, alive) per tensor that has units.
    for score, mask, axes in zip(scores, masks, unit_axes):
        mask = np.asarray(mask, dtype=np.float32)
        if mask.ndim < 2 or axes <= 0:  # No units, or not trailing ones.
            tensors.append((mask, None, None))
            continue
        units = masking.unit_count(mask.shape, axes)
        flat_mask = mask.reshape(-1, units)
        flat_score = np.asarray(score, dtype=np.float64).reshape(-1, units) * (flat_mask != 0)
        tensors.append((flat_mask, flat_score.sum(axis=0), flat_mask.any(axis=0)))
    unit_scores = _grouped_scores([t[1:] for t in tensors], groups)
    new_masks = []
    for (flat_mask, score, alive), mask in zip(tensors, masks):
        if score is None:
            new_masks.append(flat_mask.copy())
            continue
        remove = units_to_remove(unit_scores.pop(0), alive, sparsity)
        flat_mask = flat_mask.copy()
        flat_mask[:, remove] = 0.0
        new_masks.append(flat_mask.reshape(np.shape(mask)))
    return new_masks


def _grouped_scores(tensors, groups):
    """Per tensor with units, its unit scores, coupled units replaced by their group's."""
    normalized = []
    for (score, alive), group in zip(tensors, groups):
        if score is None:
            continue
        mean = score[alive].mean() if alive.any() else 0.0
        normalized.append((score / mean if mean > 0 else score, group))
    totals = {}
    for score, group in normalized:
        if group is not None:
            for unit, key in enumerate(group):
                totals[key] = totals.get(key, 0.0) + score[unit]
    return [score if group is None else np.array([totals[key] for key in group])
            for score, group in normalized]
