import math

import keras
import numpy as np
import pytest

import keras_anneal
from keras_anneal import brain_surgeon
from keras_anneal.criteria import LayerwiseOBS


def layer_data(seed=0, n=256, d=12, k=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))  # Correlated inputs.
    return x.astype("float32"), rng.normal(size=(d, k)).astype("float32"), rng.normal(size=k).astype("float32")


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("refresh", [1, 7, 2000])
def test_obs_prunes_exactly_and_compensation_beats_plain_removal(sparsity, refresh):
    x, w, b = layer_data()
    mask, new_w, new_b = brain_surgeon.prune_dense(
        w, b, np.ones_like(w), x, sparsity, refresh=refresh)
    assert mask.size - mask.sum() == math.floor(sparsity * mask.size)
    assert np.all(new_w[mask == 0] == 0)
    compensated = brain_surgeon.reconstruction_error(x, w, b, new_w, new_b)
    plain = brain_surgeon.reconstruction_error(x, w, b, w * mask, b)  # Same weights removed.
    assert compensated < plain


def test_surviving_weights_are_the_least_squares_reconstruction():
    x, w, b = layer_data(1)
    mask, new_w, new_b = brain_surgeon.prune_dense(w, b, np.ones_like(w), x, 0.6, damping=1e-10)
    x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1).astype(np.float64)
    original = x @ w + b  # Each unit's output before pruning.
    for j in range(w.shape[1]):
        kept = np.append(np.flatnonzero(mask[:, j]), x.shape[1])  # Its kept inputs and the bias.
        best, *_ = np.linalg.lstsq(x1[:, kept], original[:, j], rcond=None)
        np.testing.assert_allclose(np.append(new_w[:, j], new_b[j])[kept], best, rtol=1e-3, atol=1e-4)


def test_already_pruned_weights_stay_pruned():
    x, w, b = layer_data(2)
    start = np.ones_like(w)
    start[0, :] = 0
    mask, new_w, _ = brain_surgeon.prune_dense(w, b, start, x, 0.5)
    assert np.all(mask[0] == 0) and np.all(new_w[0] == 0)
    assert mask.size - mask.sum() == 30


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((12,)), keras.layers.Dense(8, activation="relu", name="hidden"),
        keras.layers.Dense(3, name="out")])


def test_prune_with_obs_writes_weights_that_strip_and_save_carry(tmp_path):
    x, _, _ = layer_data(3, d=12)
    model = keras_anneal.prune_model(mlp())
    report = keras_anneal.prune(model, LayerwiseOBS(), sparsity=0.5, data=x)
    assert [row.pruned for row in report.layers] == [48, 12]
    masked = keras.ops.convert_to_numpy(model(x))
    stripped = keras.ops.convert_to_numpy(keras_anneal.strip(model)(x))
    np.testing.assert_allclose(stripped, masked, rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "obs.keras")
    loaded = keras.saving.load_model(tmp_path / "obs.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), masked, rtol=1e-6, atol=1e-6)


def test_obs_prunes_the_exact_overall_count_across_layers():
    # 0.7 of 96 + 24 weights: 67.2 + 16.8 floors to 67 + 16 = 83, one short of floor(84).
    x, _, _ = layer_data(3, d=12)
    model = keras_anneal.prune_model(mlp())
    report = keras_anneal.prune(model, LayerwiseOBS(), sparsity=0.7, data=x)
    assert report.pruned == math.floor(0.7 * 120) == 84
    assert [row.pruned for row in report.layers] in ([67, 17], [68, 16])  # Largest remainder.


def test_obs_keeps_the_output_closer_than_magnitude():
    x, _, _ = layer_data(4, d=12)
    dense = keras.ops.convert_to_numpy(mlp()(x))
    errors = {}
    for name, criterion in (("magnitude", "magnitude"), ("obs", LayerwiseOBS())):
        model = keras_anneal.prune_model(mlp())
        keras_anneal.prune(model, criterion, sparsity=0.7, data=x)
        errors[name] = float(np.mean((keras.ops.convert_to_numpy(model(x)) - dense) ** 2))
    assert errors["obs"] < errors["magnitude"]


def test_obs_bad_input_leaves_the_model_alone():
    model = keras_anneal.prune_model(mlp())
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    with pytest.raises(ValueError, match="`data` is required.*data=None"):
        keras_anneal.prune(model, "obs", sparsity=0.5)
    with pytest.raises(ValueError, match="`allocation` must be .uniform.*Global"):
        keras_anneal.prune(model, "obs", sparsity=0.5, scope="global", data=np.ones((4, 12)))
    with pytest.raises(ValueError, match="`sparsity`.*sparsity=1.0"):
        keras_anneal.prune(model, "obs", sparsity=1.0, data=np.ones((4, 12)))
    depthwise = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6, 6, 1)), keras.layers.DepthwiseConv2D(3), keras.layers.Flatten(),
        keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match="Dense and Conv2D.*layers only.*DepthwiseConv2D"):
        keras_anneal.prune(depthwise, "obs", sparsity=0.5, data=np.ones((4, 6, 6, 1)))
    with pytest.raises(ValueError, match="work from the weights alone"):
        keras_anneal.AnnealedPruning(keras_anneal.schedules.FSA(0.5), criterion="obs")
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))


def conv_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((10, 10, 3)),
        keras.layers.Conv2D(6, 3, activation="relu", name="c1"),
        keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c2"),
        keras.layers.Flatten(), keras.layers.Dense(2, name="out")])


def test_obs_on_convolutions_compensates_through_the_input_patches():
    x = np.random.default_rng(0).normal(size=(32, 10, 10, 3)).astype("float32")
    model = keras_anneal.prune_model(conv_model())
    dense = keras_anneal.strip(model)
    report = keras_anneal.prune(model, "obs", sparsity=0.6, data=x)
    assert [row.pruned for row in report.layers][:2] == [math.floor(0.6 * 162), math.floor(0.6 * 216)]
    c2 = model.get_layer("masked_c2")
    c2_input = keras.Model(model.inputs, c2.input).predict(x, verbose=0)

    original = dense.get_layer("c2")  # The weights before pruning.

    def c2_error(kernel, bias):
        after = original.convolution_op(c2_input, kernel) + bias
        return np.mean((keras.ops.convert_to_numpy(original(c2_input))
                        - keras.ops.convert_to_numpy(after)) ** 2)

    mask = c2.get_masks()[0]
    compensated = c2_error(keras.ops.convert_to_numpy(c2.layer.kernel) * mask,
                           keras.ops.convert_to_numpy(c2.layer.bias))
    plain_removal = c2_error(keras.ops.convert_to_numpy(original.kernel) * mask,
                             keras.ops.convert_to_numpy(original.bias))
    assert compensated < plain_removal
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)),
                               keras.ops.convert_to_numpy(keras_anneal.strip(model)(x)), atol=1e-5)


def test_obs_in_rounds_with_retraining_between_them():
    x, _, _ = layer_data(3, d=12)
    y = np.random.default_rng(4).normal(size=(len(x), 3)).astype("float32")
    model = keras_anneal.prune_model(mlp())
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    seen = []

    def retrain(m):
        seen.append(keras_anneal.sparsity_report(m).pruned)
        m.fit(x, y, epochs=1, verbose=0)

    report = keras_anneal.prune(model, "obs", sparsity=0.6, data=x, rounds=3, between_rounds=retrain)
    assert seen == [math.floor(0.2 * 120), math.floor(0.4 * 120), math.floor(0.6 * 120)]
    assert report.pruned == seen[-1]
    with pytest.raises(ValueError, match=r"`rounds`.*rounds=0"):
        keras_anneal.prune(model, "obs", sparsity=0.6, data=x, rounds=0)
    with pytest.raises(TypeError, match=r"`between_rounds`.*between_rounds=3"):
        keras_anneal.prune(model, "obs", sparsity=0.6, data=x, between_rounds=3)
