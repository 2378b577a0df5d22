"""DropConnect on the kept weights: `Masked(drop_connect=...)` and `prune_model`."""

import keras
import numpy as np
import pytest
from conftest import DenseBlock
from conftest import regression_data
from conftest import small_mlp

import keras_anneal
from keras_anneal import Masked

RATE = 0.3


def identity_probe(rate=RATE, seed=1, units=50, inputs=40, groups=1):
    """A bias-free Dense whose output on the identity matrix is its effective kernel,
    with every other column pruned."""
    layer = Masked(keras.layers.Dense(units, use_bias=False), drop_connect=rate, seed=seed,
                   drop_connect_groups=groups)
    eye = np.eye(inputs, dtype="float32")
    layer(eye)
    layer.set_masks([np.tile([1.0, 0.0], (inputs, units // 2))])
    return layer, eye


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_training_drops_kept_weights_at_the_rate_and_scales_the_rest():
    layer, eye = identity_probe()
    kernel = numpy(layer.layer.kernel)
    trained = numpy(layer(eye, training=True))
    assert np.all(trained[:, 1::2] == 0)  # Pruned weights stay out.
    kept = trained[:, ::2]
    dropped = np.mean(kept == 0)
    assert abs(dropped - RATE) < 0.06  # 1,000 kept weights: sd 0.015.
    survivors = kept != 0
    np.testing.assert_allclose(kept[survivors], kernel[:, ::2][survivors] / (1 - RATE), rtol=1e-6)


def test_each_group_of_a_batch_gets_its_own_draw():
    groups = 3
    layer, eye = identity_probe(groups=groups)
    kernel = numpy(layer.layer.kernel)
    # Row k is example k: e_(k // 3), in group k mod 3, so out[h::3] is group h's kernel.
    trained = numpy(layer(np.repeat(eye, groups, axis=0), training=True))
    kernels = [trained[h::groups] for h in range(groups)]
    for effective in kernels:
        assert np.all(effective[:, 1::2] == 0)
        kept = effective[:, ::2]
        assert abs(np.mean(kept == 0) - RATE) < 0.06
        survivors = kept != 0
        np.testing.assert_allclose(kept[survivors], kernel[:, ::2][survivors] / (1 - RATE), rtol=1e-6)
    drops = [effective[:, ::2] == 0 for effective in kernels]
    assert not np.array_equal(drops[0], drops[1]) and not np.array_equal(drops[1], drops[2])
    # A batch that does not divide into the groups: rows 0 and 3 share a draw, 0 to 2 do not.
    same = numpy(layer(np.ones((5, 40), "float32"), training=True))
    np.testing.assert_allclose(same[0], same[3], rtol=1e-6, atol=1e-6)
    assert not np.array_equal(same[0], same[1]) and not np.array_equal(same[1], same[2])
    np.testing.assert_array_equal(numpy(layer(eye)), kernel * layer.get_masks()[0])


def test_grouped_draws_train_and_round_trip(tmp_path):
    model = keras_anneal.prune_model(
        small_mlp(), drop_connect={"hidden": RATE}, drop_connect_groups=4)
    hidden, out = model.get_layer("masked_hidden"), model.get_layer("masked_out")
    assert (hidden.drop_connect_groups, out.drop_connect_groups) == (4, 1)  # No noise, one draw.
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x, y = regression_data(n=60)
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)  # Last batch: 12 rows.
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert Masked.from_config(hidden.get_config()).drop_connect_groups == 4
    assert "drop_connect_groups" not in out.get_config()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("masked_hidden").drop_connect_groups == 4
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def noisy_mlp(weights=None):
    model = keras.Sequential([
        keras.Input((8,)),
        Masked(keras.layers.Dense(16, activation="relu"), drop_connect=0.5, seed=1),
        Masked(keras.layers.Dense(4), drop_connect=0.5, seed=2),
    ])
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def test_a_run_resumed_from_saved_weights_draws_the_noise_it_would_have(tmp_path):
    keras.utils.set_random_seed(0)
    start = noisy_mlp().get_weights()  # Masks and kernels (the noise's state is not a weight).
    x, y = regression_data()
    whole = noisy_mlp(start)
    whole.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    first = noisy_mlp(start)
    first.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    path = str(tmp_path / "resume.weights.h5")
    first.save_weights(path)
    resumed = noisy_mlp(start)
    resumed.load_weights(path)  # The noise's state comes back with the weights.
    resumed.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_inference_uses_the_masked_weights_unscaled():
    layer, eye = identity_probe()
    expected = numpy(layer.layer.kernel) * layer.get_masks()[0]
    np.testing.assert_array_equal(numpy(layer(eye)), expected)
    np.testing.assert_array_equal(numpy(layer(eye, training=False)), expected)
    model = keras.Sequential([keras.Input((40,)), layer])
    np.testing.assert_allclose(model.predict(eye, verbose=0), expected, rtol=1e-6)


def test_noise_is_drawn_anew_at_each_call_and_follows_the_seed():
    first, eye = identity_probe(seed=3)
    second, _ = identity_probe(seed=3)
    second.layer.kernel.assign(first.layer.kernel)
    a, b = numpy(first(eye, training=True)), numpy(first(eye, training=True))
    assert not np.array_equal(a == 0, b == 0)
    np.testing.assert_array_equal(numpy(second(eye, training=True)), a)


def test_without_drop_connect_training_changes_nothing():
    layer = Masked(keras.layers.Dense(4))
    x = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    np.testing.assert_array_equal(numpy(layer(x, training=True)), numpy(layer(x)))
    assert "drop_connect" not in layer.get_config()  # Configs as before.


def test_training_still_reaches_a_wrapped_layer_with_its_own_dropout():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(16)
            self.dropout = keras.layers.Dropout(0.5)

        def call(self, x, training=None):
            return self.dropout(self.dense(x), training=training)

    layer = Masked(Block(), drop_connect=0.2, seed=0)
    x = np.ones((2, 8), "float32")
    inferred = numpy(layer(x))
    assert np.array_equal(numpy(layer(x)), inferred)
    assert np.mean(numpy(layer(x, training=True)) == 0) > 0.2  # Dropout's zeros.


def test_fit_trains_the_kept_weights_and_leaves_pruned_ones_alone():
    model = keras_anneal.prune_model(small_mlp(), drop_connect=RATE)
    hidden = model.get_layer("masked_hidden")
    masks = [(np.arange(np.prod(w.shape)) % 3 != 0).reshape(w.shape).astype("float32")
             for w in hidden.prunable_weights]
    hidden.set_masks(masks)
    before = numpy(hidden.layer.kernel)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x, y = regression_data()
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    after = numpy(hidden.layer.kernel)
    pruned = masks[0] == 0
    np.testing.assert_array_equal(after[pruned], before[pruned])
    assert not np.allclose(after[~pruned], before[~pruned])
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_config_and_keras_file_round_trip(tmp_path):
    model = keras_anneal.prune_model(small_mlp(), drop_connect={"hidden": 0.25})
    layer = model.get_layer("masked_hidden")
    clone = Masked.from_config(layer.get_config())
    assert (clone.drop_connect, clone.seed) == (0.25, None)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("masked_hidden").drop_connect == 0.25
    assert loaded.get_layer("masked_out").drop_connect == 0.0
    x, _ = regression_data(n=8)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_prune_model_takes_one_rate_or_rates_by_name_and_class():
    everywhere = keras_anneal.prune_model(small_mlp(), drop_connect=0.1)
    assert [layer.drop_connect for layer in everywhere.layers] == [0.1, 0.1]
    by_key = keras_anneal.prune_model(
        small_mlp(), drop_connect={keras.layers.Dense: 0.3, "out": 0.1}
    )
    assert [layer.drop_connect for layer in by_key.layers] == [0.3, 0.1]  # The name wins.


@pytest.mark.parametrize(
    "drop_connect, error, message",
    [
        (1.0, ValueError, r"`drop_connect` must be in \[0, 1\). Received: drop_connect=1.0"),
        (-0.1, ValueError, r"`drop_connect` must be in \[0, 1\)"),
        ("0.3", TypeError, r"`drop_connect` must be a float in \[0, 1\) or a dict"),
        (True, TypeError, r"`drop_connect` must be a float"),
        ({"hidden": 1.5}, ValueError, r"`drop_connect\['hidden'\]` must be in \[0, 1\)"),
        ({"nowhere": 0.1}, ValueError,
         r"names layers that prune_model does not wrap: \['nowhere'\]"),
        ({keras.layers.Conv2D: 0.1}, ValueError, r"does not wrap: \['Conv2D'\]"),
        ({3: 0.1}, TypeError, r"must map layer names \(str\) or layer classes"),
    ],
)
def test_bad_drop_connect_is_an_error_and_the_model_is_untouched(drop_connect, error, message):
    model = small_mlp()
    layers_before = list(model.layers)
    with pytest.raises(error, match=message):
        keras_anneal.prune_model(model, drop_connect=drop_connect, inplace=True)
    assert model.layers == layers_before
    assert not any(isinstance(layer, Masked) for layer in model.layers)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"drop_connect": 1.0}, ValueError, r"`drop_connect` must be in \[0, 1\)"),
        ({"drop_connect": 0.1, "seed": -1}, ValueError, r"`seed`"),
        ({"drop_connect": 0.1, "seed": 1.5}, TypeError, r"`seed` must be an int"),
        ({"drop_connect": 0.1, "drop_connect_groups": 0}, ValueError,
         r"`drop_connect_groups` must be a positive int. Received: drop_connect_groups=0"),
        ({"drop_connect": 0.1, "drop_connect_groups": 2.0}, TypeError,
         r"`drop_connect_groups` must be an int"),
        ({"drop_connect_groups": 2}, ValueError,
         r"`drop_connect_groups` above 1 needs a `drop_connect` rate above 0"),
        ({"drop_connect": 0.1, "drop_connect_groups": 2,
          "layer": keras.layers.Dense(2, activity_regularizer="l2")}, ValueError,
         r"`drop_connect_groups` above 1 needs a layer whose call can run once per group"),
        ({"drop_connect": 0.1, "drop_connect_groups": 2,
          "layer": keras.layers.MultiHeadAttention(2, 4)}, ValueError,
         r"drop_connect_groups=2 for layer=MultiHeadAttention"),
    ],
)
def test_bad_masked_arguments_are_errors(kwargs, error, message):
    layer = kwargs.pop("layer", keras.layers.Dense(2))
    with pytest.raises(error, match=message):
        Masked(layer, **kwargs)


def test_a_rate_for_a_layer_inside_a_custom_layer_is_refused_not_ignored():
    inputs = keras.Input((4,))
    block = DenseBlock(3, inner_name="inner_dense", name="block")
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(block(inputs)))
    for rates in ({"inner_dense": 0.3}, {"inner_dense": 0.3, "out": 0.1}):
        with pytest.raises(ValueError, match=r"does not wrap: \['inner_dense'\]"):
            keras_anneal.prune_model(model, drop_connect=rates)
    pruned = keras_anneal.prune_model(model, drop_connect={"block": 0.3})  # Wrapped whole.
    rates = {layer.name: layer.drop_connect for layer in pruned.layers if isinstance(layer, Masked)}
    assert rates == {"masked_block": 0.3, "out": 0.0}
