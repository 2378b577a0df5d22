import math

import keras
import numpy as np
import pytest
from conftest import regression_data
from conftest import small_mlp

import keras_anneal
from keras_anneal import Regrowth
from keras_anneal import TemporaryRemoval


def test_temporary_removal_brings_weights_back_on_schedule():
    noise = TemporaryRemoval(fraction=0.25, duration=20, end_fraction=0.5)
    permanent = [np.ones(40)]
    w = [np.arange(40.0)]
    at0 = noise.masks(w, permanent, step=0, total_steps=100)[0]
    assert at0.sum() == 30  # floor(0.25 * 40) removed, for steps 0 to 19.
    at10 = noise.masks(w, permanent, step=10, total_steps=100)[0]
    assert np.all(at10[at0 == 0] == 0) and 20 <= at10.sum() <= 30  # Both in force.
    at30 = noise.masks(w, permanent, step=30, total_steps=100)[0]
    assert at30.sum() == 30  # Those of steps 0 and 10 are back; step 30's are out.
    at50 = noise.masks(w, permanent, step=50, total_steps=100)[0]
    assert at50.sum() == 40  # Step 30's returned at 50; none new after end_fraction.


def test_temporary_removal_of_the_largest_removes_the_largest():
    noise = TemporaryRemoval(fraction=0.5, duration=1, criterion="largest")
    mask = noise.masks([np.array([1.0, -4.0, 3.0, 0.5])], [np.ones(4)], 0, 10)[0]
    np.testing.assert_array_equal(mask, [1, 0, 0, 1])


def test_temporary_removal_never_touches_the_permanent_masks():
    noise = TemporaryRemoval(fraction=0.5, duration=5)
    permanent = [np.array([0, 1, 1, 1, 1, 0, 1, 1.0])]
    masks = noise.masks([np.ones(8)], permanent, 0, 100)[0]
    assert masks[0] == 0 and masks[5] == 0 and masks.sum() == 3
    np.testing.assert_array_equal(permanent[0], [0, 1, 1, 1, 1, 0, 1, 1])


def test_regrowth_keeps_the_count_exact_and_regrows_pruned_weights():
    regrowth = Regrowth(fraction=0.5, seed=0)
    rng = np.random.default_rng(0)
    w = [rng.normal(size=100)]
    mask = [(np.arange(100) < 20).astype(np.float32)]
    for step in range(0, 60, 10):
        new, grown = regrowth.masks(w, mask, "magnitude", step, start_step=0, total_steps=100)
        assert new[0].sum() == 20  # Sparsity exact at every update.
        assert np.all(mask[0][grown[0]] == 0)  # Regrown weights were pruned.
        mask = new


def test_regrowth_drop_fraction_decays_on_a_cosine():
    regrowth = Regrowth(fraction=0.4, end_fraction=0.5)
    assert regrowth.drop_fraction(10, 10, 100) == pytest.approx(0.4)
    assert regrowth.drop_fraction(30, 10, 100) == pytest.approx(0.2)
    assert regrowth.drop_fraction(50, 10, 100) == 0.0
    assert regrowth.drop_fraction(5, 10, 100) == 0.0


def test_config_round_trips():
    noise = TemporaryRemoval(fraction=0.3, duration=7, criterion="largest", end_fraction=0.6)
    assert TemporaryRemoval.from_config(noise.get_config()).get_config() == noise.get_config()
    regrowth = Regrowth(fraction=0.2, seed=4, end_fraction=0.9, grow="gradient", batch_size=32)
    assert Regrowth.from_config(regrowth.get_config()).get_config() == regrowth.get_config()


def _fit(callback, epochs=2):
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(small_mlp())
    model.compile(optimizer="sgd", loss="mse")
    x, y = regression_data()
    history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[callback])
    return model, history


def test_annealed_pruning_with_regrowth_keeps_the_final_sparsity_and_moves_masks():
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(self.model.get_layer("masked_hidden").get_masks()[0].copy())

    pruning = keras_anneal.AnnealedPruning(
        keras_anneal.schedules.ConstantSparsity(0.5), frequency=2, allocation="uniform",
        regrowth=Regrowth(fraction=0.3, end_fraction=0.9))
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(small_mlp())
    model.compile(optimizer="sgd", loss="mse")
    x, y = regression_data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[pruning, Watch()])
    counts = {int(mask.sum()) for mask in seen}
    assert counts == {64}  # 128 weights, exactly half kept at every step.
    assert len({mask.tobytes() for mask in seen}) > 2  # The masks moved.


def test_annealed_pruning_with_temporary_removal_ends_on_the_permanent_masks():
    pruning = keras_anneal.AnnealedPruning(
        keras_anneal.schedules.ConstantSparsity(0.5), frequency=1, allocation="uniform",
        temporary=TemporaryRemoval(fraction=0.5, duration=3, end_fraction=0.9))
    model, history = _fit(pruning)
    for layer in keras_anneal.masked_layers(model):
        (mask,) = layer.get_masks()
        assert mask.size - mask.sum() == math.floor(0.5 * mask.size)
    assert history.history["sparsity"][-1] == pytest.approx(0.5, abs=0.01)
    assert "sparsity/masked_hidden" in history.history


def test_effective_weight_gradients_reach_pruned_weights():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, use_bias=False, name="linear")]))
    model.compile(loss="mse")
    (layer,) = keras_anneal.masked_layers(model)
    mask = np.array([[1, 0], [0, 1], [1, 1.0]])
    layer.set_masks([mask])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    effective = keras.ops.convert_to_numpy(layer.layer.kernel) * mask
    expected = 2 * x.T @ (x @ effective - y) / y.size  # Mean squared error over 5 x 2 values.
    (gradient,) = keras_anneal.gradients.effective_weight_gradients(model, x, y)
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)
    assert np.all(gradient[mask == 0] != 0)  # Pruned weights get their gradient too.
    np.testing.assert_array_equal(layer.get_masks()[0], mask)  # Nothing changed.


def test_gradient_regrowth_regrows_the_pruned_weights_of_largest_gradient():
    regrowth = Regrowth(fraction=0.5, grow="gradient")
    w = [np.array([0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0])]
    m = [np.array([0, 0, 0, 0, 1, 1, 1, 1.0])]
    g = [np.array([0.1, -0.9, 0.5, 0.2, 9.0, 9.0, 9.0, 9.0])]
    new, grown = regrowth.masks(w, m, "magnitude", step=0, start_step=0, total_steps=100, gradients=g)
    np.testing.assert_array_equal(grown[0], [0, 1, 1, 0, 0, 0, 0, 0])  # |g| of the pruned.
    np.testing.assert_array_equal(new[0], [0, 1, 1, 0, 0, 0, 1, 1])  # The two smallest dropped.
    with pytest.raises(ValueError, match="gradients=None"):
        regrowth.masks(w, m, "magnitude", step=0, start_step=0, total_steps=100)


def test_annealed_pruning_with_gradient_regrowth_keeps_the_count_exact():
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(self.model.get_layer("masked_hidden").get_masks()[0].copy())

    x, y = regression_data()
    pruning = keras_anneal.AnnealedPruning(
        keras_anneal.schedules.ConstantSparsity(0.5), frequency=2, allocation="uniform",
        regrowth=Regrowth(fraction=0.3, end_fraction=0.9, grow="gradient", batch_size=16),
        regrowth_data=(x, y))
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(small_mlp())
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[pruning, Watch()])
    assert {int(mask.sum()) for mask in seen} == {64}  # Exactly half of 128 at every step.
    assert len({mask.tobytes() for mask in seen}) > 2  # The masks moved.


def test_effective_weight_gradients_count_activity_regularization():
    def gradient(regularizer):
        keras.utils.set_random_seed(0)
        model = keras_anneal.prune_model(keras.Sequential([keras.Input((3,)), keras.layers.Dense(
            2, use_bias=False, activity_regularizer=regularizer)]))
        model.compile(loss="mse")
        x, y = np.ones((4, 3)), np.zeros((4, 2))
        return keras_anneal.gradients.effective_weight_gradients(model, x, y)[0]

    assert not np.allclose(gradient(keras.regularizers.L2(1.0)), gradient(None))
