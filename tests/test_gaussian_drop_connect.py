"""Gaussian DropConnect, drawn per example: `Masked(drop_connect_noise="gaussian")`."""

import math

import keras
import numpy as np
import pytest
from conftest import regression_data
from conftest import small_mlp

import keras_anneal
from keras_anneal import Masked

RATE = 0.3
SIGMA2 = RATE / (1 - RATE)  # The Bernoulli draw's variance, which the normal noise matches.


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def probe(activation=None, seed=0):
    """A Dense(3) with one large kernel entry pruned: if the noise used it, it would show."""
    layer = Masked(keras.layers.Dense(3, activation=activation), drop_connect=RATE, seed=seed,
                   drop_connect_noise="gaussian")
    layer(np.ones((1, 4), "float32"))
    kernel = np.array([[0.5, -1.0, 0.2], [100.0, 0.3, -0.4], [0.1, 0.8, 0.6], [-0.7, 0.2, 1.0]])
    layer.layer.kernel.assign(kernel.astype("float32"))
    layer.layer.bias.assign(np.array([0.1, -0.2, 0.3], "float32"))
    mask = np.ones((4, 3), "float32")
    mask[1, 0] = 0.0
    layer.set_masks([mask])
    return layer, kernel * mask


def test_each_example_draws_its_own_noise_with_dropconnects_mean_and_variance():
    layer, kept = probe()
    x = np.array([1.0, 2.0, -1.0, 0.5], "float32")
    n = 20000
    outputs = numpy(layer(np.tile(x, (n, 1)), training=True))
    # One draw per example, not per batch (a few float32 values may coincide).
    assert len(np.unique(outputs[:, 0])) > 0.99 * n
    mean = x @ kept + np.array([0.1, -0.2, 0.3])
    variance = SIGMA2 * (x**2) @ (kept**2)
    # The sample mean is within 5 standard errors; the sample variance within 5%.
    np.testing.assert_array_less(np.abs(outputs.mean(axis=0) - mean), 5 * np.sqrt(variance / n))
    np.testing.assert_allclose(outputs.var(axis=0), variance, rtol=0.05)


def test_inference_is_the_masked_dense_and_the_activation_follows_the_noise():
    linear, kept = probe(seed=5)
    relu, _ = probe(activation="relu", seed=5)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    expected = np.maximum(x @ kept + np.array([0.1, -0.2, 0.3]), 0.0)
    np.testing.assert_allclose(numpy(relu(x)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(numpy(relu(x, training=False)), expected, rtol=1e-5, atol=1e-6)
    # The same seed draws the same noise: relu of the linear layer's draw is the relu layer's.
    noisy = numpy(relu(x, training=True))
    np.testing.assert_allclose(noisy, np.maximum(numpy(linear(x, training=True)), 0.0),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(noisy, expected)


def test_fit_trains_the_kept_weights_and_leaves_pruned_ones_alone():
    model = keras_anneal.prune_model(small_mlp(), drop_connect=RATE, drop_connect_noise="gaussian")
    hidden = model.get_layer("masked_hidden")
    assert [layer.drop_connect_noise for layer in model.layers] == ["gaussian", "gaussian"]
    mask = (np.arange(math.prod(hidden.layer.kernel.shape)) % 3 != 0).reshape(
        hidden.layer.kernel.shape).astype("float32")
    mask[:, 0] = 0.0  # A unit with no kept weight: its noise's variance is 0.
    hidden.set_masks([mask])
    before, bias_before = numpy(hidden.layer.kernel), numpy(hidden.layer.bias)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x, y = regression_data()
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    after, bias_after = numpy(hidden.layer.kernel), numpy(hidden.layer.bias)
    assert np.all(np.isfinite(after))
    np.testing.assert_array_equal(after[mask == 0], before[mask == 0])
    assert not np.allclose(after[mask == 1], before[mask == 1])
    # The removed unit's bias has no gradient under the noise either; the others train.
    assert bias_after[0] == bias_before[0]
    assert np.all(bias_after[1:] != bias_before[1:])
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_config_and_keras_file_round_trip(tmp_path):
    model = keras_anneal.prune_model(
        small_mlp(), drop_connect={"hidden": 0.25}, drop_connect_noise="gaussian")
    hidden, out = model.get_layer("masked_hidden"), model.get_layer("masked_out")
    assert Masked.from_config(hidden.get_config()).drop_connect_noise == "gaussian"
    assert out.drop_connect_noise == "bernoulli"  # No rate: the default, and no config key.
    assert "drop_connect_noise" not in out.get_config()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("masked_hidden").drop_connect_noise == "gaussian"
    x, _ = regression_data(n=8)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


class OwnCall(keras.layers.Dense):
    """A Dense subclass with its own call: the noise cannot be drawn in its place."""

    def call(self, inputs):
        return super().call(inputs) * 2.0


class StandardizedConv(keras.layers.Conv2D):
    """A convolution with its own kernel transform: its noise's variance is not conv(x², k²)."""

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel - keras.ops.mean(kernel))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"drop_connect": 0.1, "drop_connect_noise": "normal"},
         r"`drop_connect_noise` must be one of 'bernoulli', 'gaussian'. "
         r"Received: drop_connect_noise='normal'"),
        ({"drop_connect_noise": "gaussian"}, r"needs a `drop_connect` rate above 0"),
        ({"drop_connect": 0.1, "drop_connect_noise": "gaussian", "drop_connect_groups": 2},
         r"needs one group .*drop_connect_groups=2"),
        ({"drop_connect": 0.1, "drop_connect_noise": "gaussian",
          "layer": keras.layers.DepthwiseConv2D(3)},
         r"needs a `keras.layers.Dense`, or a `Conv1D`/`Conv2D`/`Conv3D` \(not causal\), "
         r"running its own class's `call` \(and convolution\). .*layer=DepthwiseConv2D"),
        ({"drop_connect": 0.1, "drop_connect_noise": "gaussian", "layer": StandardizedConv(2, 3)},
         r"layer=StandardizedConv"),
        ({"drop_connect": 0.1, "drop_connect_noise": "gaussian",
          "layer": keras.layers.Conv1D(2, 3, padding="causal")}, r"layer=Conv1D"),
        ({"drop_connect": 0.1, "drop_connect_noise": "gaussian", "layer": OwnCall(2)},
         r"layer=OwnCall"),
        ({"drop_connect": 0.1, "drop_connect_noise": "gaussian",
          "layer": keras.layers.Dense(2, activity_regularizer="l2")},
         r"needs a layer without an activity regularizer"),
    ],
)
def test_bad_arguments_are_errors(kwargs, message):
    layer = kwargs.pop("layer", keras.layers.Dense(2))
    with pytest.raises(ValueError, match=message):
        Masked(layer, **kwargs)


@pytest.mark.parametrize(
    "drop_connect, noise, message",
    [
        (0.2, "uniform", r"`drop_connect_noise` must be one of"),
        ({keras.layers.DepthwiseConv2D: 0.2}, "gaussian", r"layer=DepthwiseConv2D\(name='conv'\)"),
    ],
)
def test_prune_model_refuses_and_leaves_the_model_untouched(drop_connect, noise, message):
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.DepthwiseConv2D(3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(keras.layers.Flatten()(x)))
    layers_before = list(model.layers)
    with pytest.raises(ValueError, match=message):
        keras_anneal.prune_model(model, drop_connect=drop_connect, drop_connect_noise=noise,
                                 inplace=True)
    assert model.layers == layers_before
    assert not any(isinstance(layer, Masked) for layer in model.layers)


def test_a_sequence_input_draws_per_example_and_position():
    layer = Masked(keras.layers.Dense(4), drop_connect=RATE, seed=0, drop_connect_noise="gaussian")
    x = np.ones((2, 5, 3), "float32")  # Dense on the last axis, as Dense does.
    noisy = numpy(layer(x, training=True))
    assert noisy.shape == (2, 5, 4)
    assert not np.allclose(noisy[0, 0], noisy[0, 1]) and not np.allclose(noisy[0, 0], noisy[1, 0])
    np.testing.assert_allclose(numpy(layer(x)), numpy(layer.layer(x)), rtol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_a_convolution_draws_per_example_and_position_with_the_convolved_variance(data_format):
    if data_format == "channels_first" and keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow's CPU convolutions take channels_last only")
    conv = keras.layers.Conv2D(2, 3, padding="same", data_format=data_format)
    layer = Masked(conv, drop_connect=RATE, seed=0, drop_connect_noise="gaussian")
    channels_axis = 0 if data_format == "channels_first" else -1  # Of one example.
    image = np.random.default_rng(0).normal(size=(5, 5, 1)).astype("float32")
    image = np.moveaxis(image, -1, 0) if data_format == "channels_first" else image
    layer(image[None])
    conv.kernel.assign(np.random.default_rng(1).normal(size=(3, 3, 1, 2)).astype("float32"))
    conv.bias.assign(np.array([0.5, -1.0], "float32"))
    mask = (np.arange(18) % 4 != 0).reshape(3, 3, 1, 2).astype("float32")
    layer.set_masks([mask])
    n = 20000
    outputs = numpy(layer(np.tile(image[None], (n, 1, 1, 1)), training=True))
    # The mean is the masked layer (bias included, on the channels' axis), the
    # variance sigma^2 times the convolution of x^2 with the squared kernel.
    mean = numpy(layer(image[None]))[0]
    squares = keras.layers.Conv2D(2, 3, padding="same", use_bias=False, data_format=data_format)
    squares(image[None])
    squares.kernel.assign(np.square(numpy(conv.kernel) * mask))
    variance = SIGMA2 * numpy(squares(np.square(image)[None]))[0]
    assert np.all(variance > 0.01) and mean.shape[channels_axis] == 2
    np.testing.assert_array_less(np.abs(outputs.mean(axis=0) - mean), 5 * np.sqrt(variance / n) + 1e-4)
    np.testing.assert_allclose(outputs.var(axis=0), variance, rtol=0.05)
    # Neighbouring positions draw apart: their noise is uncorrelated.
    if data_format == "channels_first":
        outputs = np.moveaxis(outputs, 1, -1)
    assert abs(np.corrcoef(outputs[:, 1, 1, 0], outputs[:, 1, 2, 0])[0, 1]) < 0.05


def test_a_convnet_trains_with_gaussian_noise_on_its_convolution_and_round_trips(tmp_path):
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    outputs = keras.layers.Dense(1, name="out")(keras.layers.Flatten()(x))
    model = keras_anneal.prune_model(keras.Model(inputs, outputs),
                                     drop_connect={keras.layers.Conv2D: RATE},
                                     drop_connect_noise="gaussian")
    conv = model.get_layer("masked_conv")
    assert conv.drop_connect_noise == "gaussian"
    mask = (np.arange(36) % 3 != 0).reshape(3, 3, 1, 4).astype("float32")
    conv.set_masks([mask])
    before = numpy(conv.layer.kernel)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6, 6, 1)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    after = numpy(conv.layer.kernel)
    assert np.all(np.isfinite(after))
    np.testing.assert_array_equal(after[mask == 0], before[mask == 0])
    assert not np.allclose(after[mask == 1], before[mask == 1])
    path = str(tmp_path / "convnet.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("masked_conv").drop_connect_noise == "gaussian"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
