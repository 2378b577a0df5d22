import numpy as np
import pytest

from keras_anneal import masking


@pytest.mark.parametrize(
    "sparsity, size, expected",
    [(0.0, 10, 0), (0.5, 10, 5), (0.55, 10, 5), (0.29, 100, 29), (0.9, 25, 22), (0.999, 10, 9)],
)
def test_pruned_count_is_floor(sparsity, size, expected):
    assert masking.pruned_count(sparsity, size) == expected


def test_keep_largest_keeps_exactly_n_largest():
    scores = np.array([0.3, 5.0, -1.0, 2.0, 0.1, 4.0])
    keep = masking.keep_largest(scores, 3)
    np.testing.assert_array_equal(keep, [False, True, False, True, False, True])


def test_keep_largest_breaks_ties_towards_lower_index():
    scores = np.array([1.0, 2.0, 1.0, 1.0, 2.0, 1.0])
    keep = masking.keep_largest(scores, 4)
    np.testing.assert_array_equal(keep, [True, True, True, False, True, False])


@pytest.mark.parametrize("n_keep", [0, 1, 7, 8])
def test_keep_largest_edges(n_keep):
    keep = masking.keep_largest(np.arange(8.0), n_keep)
    assert keep.sum() == n_keep
    np.testing.assert_array_equal(np.flatnonzero(keep), np.arange(8 - n_keep, 8))


@pytest.mark.parametrize("sparsity", [0.1, 0.37, 0.5, 0.9, 0.99])
def test_layer_scope_prunes_exact_count_per_weight(sparsity):
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(7, 13)), rng.normal(size=(3, 3, 2, 5)), rng.normal(size=(11,))]
    masks = masking.magnitude_masks(weights, [np.ones_like(w) for w in weights], sparsity)
    for weight, mask in zip(weights, masks):
        assert mask.shape == weight.shape
        assert mask.size - np.count_nonzero(mask) == int(np.floor(sparsity * mask.size + 1e-9))
        # Every kept weight is at least as large as every pruned one.
        assert np.abs(weight[mask == 1]).min() >= np.abs(weight[mask == 0]).max()


@pytest.mark.parametrize("sparsity", [0.2, 0.75, 0.95])
def test_global_scope_prunes_exact_total_and_ranks_across_layers(sparsity):
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=(20, 10)) * 0.1, rng.normal(size=(10, 5))]
    masks = masking.magnitude_masks(
        weights, [np.ones_like(w) for w in weights], sparsity, scope="global"
    )
    total = sum(m.size for m in masks)
    pruned = [m.size - np.count_nonzero(m) for m in masks]
    assert sum(pruned) == int(np.floor(sparsity * total + 1e-9))
    # The small-scale layer loses a larger share than the other.
    assert pruned[0] / masks[0].size > pruned[1] / masks[1].size
    kept = np.concatenate([np.abs(w[m == 1]) for w, m in zip(weights, masks)])
    dropped = np.concatenate([np.abs(w[m == 0]) for w, m in zip(weights, masks)])
    assert kept.min() >= dropped.max()


def test_pruned_weights_never_come_back():
    weights = [np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])]
    mask = np.array([0.0, 1, 1, 1, 1, 1])  # The largest weight is already pruned.
    new = masking.magnitude_masks(weights, [mask], 0.5)[0]
    np.testing.assert_array_equal(new, [0, 1, 1, 1, 0, 0])


def test_target_below_current_sparsity_prunes_nothing_more_and_restores_nothing():
    weights = [np.arange(1.0, 11.0)]
    mask = np.array([0.0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    new = masking.magnitude_masks(weights, [mask], 0.2)[0]
    np.testing.assert_array_equal(new, mask)


def test_ties_are_deterministic_for_constant_weights():
    weights = [np.full((4, 4), 0.5)]
    mask = masking.magnitude_masks(weights, [np.ones((4, 4))], 0.25)[0]
    np.testing.assert_array_equal(mask.ravel(), [1] * 12 + [0] * 4)
