import json
import math

import keras
import numpy as np
import pytest
from conftest import regression_data
from conftest import small_mlp

import keras_anneal
from keras_anneal import criteria


WEIGHTS = [np.array([[0.5, -3.0, 0.5], [2.0, -0.1, 0.5]]), np.arange(-5.0, 5.0)]


@pytest.mark.parametrize("criterion", [criteria.Magnitude(), criteria.Random(seed=3), criteria.LargestMagnitude()])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_each_criterion_prunes_exactly_floor_s_n(criterion, sparsity, scope):
    masks = criterion.masks(
        WEIGHTS, [np.ones_like(w) for w in WEIGHTS], sparsity, scope, keep_units_connected=False
    )
    pruned, total = keras_anneal.masking.count_pruned(masks)
    assert pruned == math.floor(sparsity * total + 1e-9)
    if scope == "layer":  # Uniform: each tensor floor(s n), or one more to make the total.
        for mask in masks:
            floor = math.floor(sparsity * mask.size + 1e-9)
            assert floor <= mask.size - np.count_nonzero(mask) <= floor + 1


def test_magnitude_keeps_largest_and_ties_go_to_the_lower_index():
    mask = criteria.Magnitude().masks(
        [WEIGHTS[0]], [np.ones((2, 3))], 0.5, keep_units_connected=False
    )[0]
    # |w| = .5 3 .5 / 2 .1 .5: keep 3, 2 and the first .5 (lowest index).
    np.testing.assert_array_equal(mask, [[1, 1, 0], [1, 0, 0]])


def test_largest_magnitude_prunes_the_largest():
    mask = criteria.LargestMagnitude().masks([WEIGHTS[0]], [np.ones((2, 3))], 0.5)[0]
    # Scores -|w|: keep -.1 and the two first -.5 (ties to the lower index).
    np.testing.assert_array_equal(mask, [[1, 0, 1], [0, 1, 0]])


def test_random_is_seeded_by_seed_and_step():
    ones = [np.ones(50)]
    a = criteria.Random(seed=1).masks(ones, ones, 0.5, step=10)[0]
    b = criteria.Random(seed=1).masks(ones, ones, 0.5, step=10)[0]
    c = criteria.Random(seed=1).masks(ones, ones, 0.5, step=11)[0]
    d = criteria.Random(seed=2).masks(ones, ones, 0.5, step=10)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_pruned_weights_stay_pruned_under_every_criterion():
    start = [np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0])]
    for criterion in (criteria.Magnitude(), criteria.Random(), criteria.LargestMagnitude()):
        mask = criterion.masks([np.arange(6.0)], start, 0.5)[0]
        assert mask[0] == 0 and mask.sum() == 3


@pytest.mark.parametrize("criterion", [criteria.Magnitude(), criteria.Random(seed=7), criteria.LargestMagnitude()])
def test_criteria_round_trip_through_json_config(criterion):
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(criterion)))
    restored = criteria.get(config)
    assert restored == criterion and type(restored) is type(criterion)
    # What a `.keras` file's loader calls, with no `custom_objects`.
    loaded = keras.saving.deserialize_keras_object(config)
    assert loaded == criterion and type(loaded) is type(criterion)


def test_names_give_the_criteria():
    assert criteria.get("magnitude") == criteria.Magnitude()
    assert criteria.get("largest") == criteria.LargestMagnitude()
    assert criteria.get("random") == criteria.Random()


def test_a_custom_criterion_overrides_one_method():
    class Smallest(criteria.PruningCriterion):
        def scores(self, weights, masks, step=0):
            return [-np.abs(w) for w in weights]

    mask = Smallest().masks([np.array([0.1, 3.0, 2.0, 0.2])], [np.ones(4)], 0.5)[0]
    np.testing.assert_array_equal(mask, [1, 0, 0, 1])


@pytest.mark.parametrize("criterion", ["random", "largest"])
def test_annealed_pruning_takes_a_criterion(criterion):
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(small_mlp())
    model.compile(optimizer="sgd", loss="mse")
    x, y = regression_data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[keras_anneal.AnnealedPruning(
        keras_anneal.schedules.ConstantSparsity(0.5), frequency=4, criterion=criterion,
        allocation="uniform")])
    hidden = model.get_layer("masked_hidden")
    (mask,) = hidden.get_masks()
    assert mask.size - mask.sum() == 64
    if criterion == "largest":
        kernel = keras.ops.convert_to_numpy(hidden.layer.kernel)
        # Pruned before the first step: the kept weights were the smallest at step 0.
        assert np.abs(kernel[mask == 1]).mean() < np.abs(kernel[mask == 0]).mean()


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_one_shot_prune_sets_exact_counts_and_keeps_pruned_weights(scope):
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(small_mlp())
    hidden = model.get_layer("masked_hidden")
    first = np.ones((8, 16))
    first[0, 0] = 0
    hidden.set_masks([first])
    report = keras_anneal.prune(
        model, "magnitude", sparsity=0.75, scope=scope, keep_units_connected=False
    )
    sizes = [128, 64]
    if scope == "layer":
        assert [row.pruned for row in report.layers] == [96, 48]
    else:
        assert report.pruned == math.floor(0.75 * sum(sizes))
    assert hidden.get_masks()[0][0, 0] == 0
    kernel = np.abs(keras.ops.convert_to_numpy(hidden.layer.kernel))
    mask = hidden.get_masks()[0]
    if scope == "layer":
        assert kernel[mask == 1].min() >= np.sort(kernel[(mask == 0) & (first == 1)])[-1]


def test_one_shot_prune_with_bad_input_changes_nothing():
    model = keras_anneal.prune_model(small_mlp())
    with pytest.raises(ValueError, match="`sparsity`.*sparsity=1.5"):
        keras_anneal.prune(model, sparsity=1.5)
    with pytest.raises(ValueError, match="no `keras_anneal.Masked` layer"):
        keras_anneal.prune(small_mlp(), sparsity=0.5)
    assert keras_anneal.sparsity_report(model).pruned == 0
