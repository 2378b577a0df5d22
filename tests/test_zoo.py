"""The shapes of model Keras users write, each pruned with the README's two lines.

Every model is pruned with `prune_model`, trained a few steps with
`AnnealedPruning`, then checked: exact per-tensor counts, `strip` predicts
the same, `.keras` save/load (registered classes, no `custom_objects`)
predicts the same with the same masks, and one post-training search runs.
"""

import math
import warnings

import keras
import numpy as np
import pytest

import keras_anneal

L = keras.layers
SPARSITY = 0.5


@keras.saving.register_keras_serializable(package="zoo")
class TransformerBlock(L.Layer):
    """The usual Transformer encoder block of Keras' examples."""

    def __init__(self, embed_dim, num_heads, ff_dim, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.num_heads, self.ff_dim = embed_dim, num_heads, ff_dim
        self.att = L.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([L.Dense(ff_dim, activation="relu"), L.Dense(embed_dim)])
        self.norm1 = L.LayerNormalization(epsilon=1e-6)
        self.norm2 = L.LayerNormalization(epsilon=1e-6)

    def call(self, inputs):
        x = self.norm1(inputs + self.att(inputs, inputs))
        return self.norm2(x + self.ffn(x))

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim,
                "num_heads": self.num_heads, "ff_dim": self.ff_dim}


@keras.saving.register_keras_serializable(package="zoo")
class SubclassedNet(keras.Model):
    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = L.Dense(units, activation="relu")
        self.out = L.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def resnet_block():
    inputs = keras.Input((6, 6, 4))
    x = L.Conv2D(4, 3, padding="same")(inputs)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.Conv2D(4, 3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = keras.ops.relu(x + inputs)  # The operator residual, and a keras.ops call.
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2)(x)), (6, 6, 4)


def concatenate():
    inputs = keras.Input((5,))
    left = L.Dense(4, activation="relu")(inputs)
    right = L.Dense(3, activation="tanh")(inputs)
    x = L.Concatenate()([left, right])
    return keras.Model(inputs, L.Dense(2)(x * 2.0)), (5,)


def transformer():
    inputs = keras.Input((6,), dtype="int32")
    x = L.Embedding(20, 8)(inputs)
    x = TransformerBlock(8, 2, 8)(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(2)(x)), "tokens"


def mixer():
    """MLP-Mixer blocks: token mixing across patches, channel mixing across features."""
    inputs = keras.Input((4, 6))  # 4 patches of 6 channels.
    x = inputs
    for _ in range(2):
        y = L.LayerNormalization()(x)
        y = L.Permute((2, 1))(y)
        y = L.Dense(4, activation="gelu")(y)  # Token mixing.
        x = x + L.Permute((2, 1))(y)
        y = L.LayerNormalization()(x)
        x = x + L.Dense(6)(L.Dense(8, activation="gelu")(y))  # Channel mixing.
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(2)(x)), (4, 6)


def subclassed():
    model = SubclassedNet()
    model(np.zeros((1, 5), "float32"))
    return model, (5,)


def shared_layers():
    inputs = keras.Input((5,))
    shared = L.Dense(5, activation="relu", name="shared")
    x = shared(shared(inputs))  # One layer, called twice.
    return keras.Model(inputs, L.Dense(2)(x)), (5,)


def nested():
    inner = keras.Sequential([keras.Input((5,)), L.Dense(6, activation="relu"), L.Dense(4)], name="inner")
    inputs = keras.Input((5,))
    x = inner(inputs)
    return keras.Model(inputs, L.Dense(2)(x)), (5,)


def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((5,))
        x = L.Dense(8, activation="relu")(inputs)
        outputs = L.Dense(2, dtype="float32")(x)
        return keras.Model(inputs, outputs), (5,)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def lstm():
    inputs = keras.Input((6, 4))
    x = L.LSTM(8)(inputs)
    return keras.Model(inputs, L.Dense(2)(x)), (6, 4)


def bidirectional_gru():
    """A Bidirectional GRU over the sequence, then a SimpleRNN reading its outputs."""
    inputs = keras.Input((6, 4))
    x = L.Bidirectional(L.GRU(4, return_sequences=True))(inputs)
    x = L.SimpleRNN(4)(x)
    return keras.Model(inputs, L.Dense(2)(x)), (6, 4)


MODELS = {
    "resnet_block": resnet_block,
    "concatenate": concatenate,
    "transformer": transformer,
    "mixer": mixer,
    "subclassed": subclassed,
    "shared_layers": shared_layers,
    "nested": nested,
    "mixed_precision": mixed_precision,
    "jit_compile": concatenate,
    "lstm": lstm,
    "bidirectional_gru": bidirectional_gru,
}


def data_for(input_shape, n=32, seed=0):
    rng = np.random.default_rng(seed)
    if input_shape == "tokens":
        x = rng.integers(0, 20, (n, 6)).astype("int32")
    else:
        x = rng.normal(size=(n, *input_shape)).astype("float32")
    return x, rng.normal(size=(n, 2)).astype("float32")


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False)).astype("float32")


@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_model_prunes_trains_strips_saves_and_searches(name, tmp_path):
    keras.utils.set_random_seed(0)
    model, input_shape = MODELS[name]()
    x, y = data_for(input_shape)
    before = predict(model, x)

    pruned = keras_anneal.prune_model(model)
    np.testing.assert_allclose(predict(pruned, x), before, rtol=1e-3, atol=1e-3)
    pruned.compile(optimizer="adam", loss="mse", jit_compile=name == "jit_compile")
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[
        keras_anneal.AnnealedPruning(keras_anneal.schedules.ConstantSparsity(SPARSITY), frequency=2,
                                     allocation="uniform")
    ])

    layers = keras_anneal.masked_layers(pruned)
    assert layers, "nothing was wrapped"
    for layer in layers:
        for mask in layer.get_masks():
            assert mask.size - np.count_nonzero(mask) == math.floor(SPARSITY * mask.size)
    masked_prediction = predict(pruned, x)
    assert np.all(np.isfinite(masked_prediction))

    stripped = keras_anneal.strip(pruned)
    assert keras_anneal.masked_layers(stripped) == []
    np.testing.assert_allclose(predict(stripped, x), masked_prediction, rtol=1e-5, atol=1e-5)

    path = str(tmp_path / f"{name}.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(predict(loaded, x), masked_prediction, rtol=1e-6, atol=1e-6)
    for old, new in zip(layers, keras_anneal.masked_layers(loaded)):
        for a, b in zip(old.get_masks(), new.get_masks()):
            np.testing.assert_array_equal(a, b)

    before_search = keras_anneal.sparsity_report(pruned).pruned
    result = keras_anneal.search.simulated_annealing(
        pruned, x, y, iterations=3, seed=0, verbose=0
    )
    assert result.evaluations >= 2
    assert keras_anneal.sparsity_report(pruned).pruned >= before_search


def test_multi_head_attention_kernels_are_all_masked():
    inputs = keras.Input((5, 8))
    model = keras.Model(inputs, L.MultiHeadAttention(2, 4, name="mha")(inputs, inputs))
    pruned = keras_anneal.prune_model(model)
    (layer,) = keras_anneal.masked_layers(pruned)
    names = sorted(w.path.split("/")[-2] for w in layer.prunable_weights)
    assert names == ["key", "attention_output", "query", "value"] or len(names) == 4
    assert keras_anneal.sparsity_report(pruned).total == 4 * (8 * 2 * 4)


def test_masked_accepts_an_unbuilt_multi_head_attention_for_cross_attention():
    query, value = keras.Input((5, 8)), keras.Input((3, 6))
    layer = keras_anneal.Masked(L.MultiHeadAttention(2, 4))
    model = keras.Model([query, value], layer(query, value))
    assert keras_anneal.sparsity_report(model).total == 8 * 8 + 6 * 8 * 2 + 8 * 8
    x = [np.ones((2, 5, 8), "float32"), np.ones((2, 3, 6), "float32")]
    layer.set_masks([np.zeros(w.shape) for w in layer.prunable_weights])
    np.testing.assert_allclose(predict(model, x), 0.0, atol=1e-6)  # Only biases of zero.


def test_custom_layer_without_get_config_is_copied_by_calling_it():
    class Block(L.Layer):  # No get_config, no build: sublayers built by the call.
        def __init__(self):
            super().__init__()
            self.att = L.MultiHeadAttention(num_heads=2, key_dim=4)
            self.ffn = keras.Sequential([L.Dense(8, activation="relu"), L.Dense(8)])

        def call(self, x):
            return x + self.ffn(x + self.att(x, x))

    inputs = keras.Input((5, 8))
    model = keras.Model(inputs, Block()(inputs))
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    pruned = keras_anneal.prune_model(model)
    np.testing.assert_allclose(predict(pruned, x), predict(model, x), rtol=1e-5, atol=1e-5)
    assert keras_anneal.sparsity_report(pruned).total == 4 * 64 + 2 * 64


def test_uncopyable_layer_is_one_clear_error_and_inplace_prunes_it():
    class Holder(L.Layer):  # Its constructor takes a layer: Keras cannot auto-config it.
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, x):
            return self.inner(x)

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Holder(L.Dense(3))(inputs))
    with pytest.raises(ValueError, match=r"(?s)Cannot copy layer .holder. \(Holder\).*inplace=True"):
        keras_anneal.prune_model(model)
    pruned = keras_anneal.prune_model(model, inplace=True)
    (layer,) = keras_anneal.masked_layers(pruned)
    layer.set_masks([np.zeros((4, 3))])
    x = np.ones((2, 4), "float32")
    stripped = keras_anneal.strip(pruned, inplace=True)
    np.testing.assert_allclose(predict(stripped, x), predict(pruned, x), atol=1e-6)
    assert keras_anneal.masked_layers(stripped) == []


def test_layers_with_unknown_weights_are_named_in_one_warning():
    class Scale(L.Layer):
        def build(self, shape):
            self.scale = self.add_weight(shape=shape[-1:], initializer="ones")

        def call(self, x):
            return x * self.scale

    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(2)(Scale(name="scale")(inputs)))
    with pytest.warns(UserWarning, match=r"left these trainable weights unmasked.*'scale'"):
        keras_anneal.prune_model(model)


def test_a_lambda_layer_of_a_python_function_is_shared_not_copied():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    scaled = L.Lambda(lambda t: t * 2.0 + 1.0)(L.Dense(8)(inputs))  # Its config will not load.
    model = keras.Model(inputs, L.Dense(2)(scaled))
    pruned = keras_anneal.prune_model(model)
    keras_anneal.prune(pruned, sparsity=0.5)
    x = np.random.default_rng(0).normal(size=(4, 6))
    stripped = keras_anneal.strip(pruned)
    np.testing.assert_allclose(predict(pruned, x), predict(stripped, x), atol=1e-6)
    assert keras_anneal.sparsity_report(stripped).pruned == 32


def test_the_weights_a_layer_declares_unprunable_are_not_warned_of():
    class Affine(L.Layer):  # Its offset is not named `bias`.
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 3))
            self.b = self.add_weight(shape=(3,), initializer="zeros")

        def call(self, x):
            return x @ self.w + self.b

        def get_prunable_weights(self):
            return [self.w]

    inputs = keras.Input((4,))
    # Normalization's scales and shifts, PReLU's slopes: no connections to prune either.
    model = keras.Model(inputs, L.Dense(2)(L.PReLU()(L.BatchNormalization()(Affine()(inputs)))))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned = keras_anneal.prune_model(model)
    assert not [w for w in caught if "unmasked" in str(w.message)]
    assert len(keras_anneal.masked_layers(pruned)) == 2


def test_two_threads_calling_one_model_leave_its_variables_in_place():
    import threading

    model = keras_anneal.prune_model(
        keras.Sequential([keras.Input((16,)), L.Dense(32), L.Dense(4)])
    )
    for layer in keras_anneal.masked_layers(model):
        layer.set_masks([np.random.default_rng(1).random(w.shape) > 0.5 for w in layer.prunable_weights])
    x = np.random.default_rng(0).normal(size=(8, 16)).astype("float32")
    expected = predict(model, x)
    errors = []

    def work():
        try:
            for _ in range(30):
                np.testing.assert_allclose(predict(model, x), expected, rtol=1e-5, atol=1e-5)
        except Exception as error:  # Reported below, in the main thread.
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for layer in keras_anneal.masked_layers(model):
        assert vars(layer.layer)["_kernel"] is layer.prunable_weights[0]


def test_layers_called_with_keywords_only_are_wrapped():
    query = keras.Input((5, 8))
    model = keras.Model(query, L.MultiHeadAttention(2, 4)(query=query, value=query))
    pruned = keras_anneal.prune_model(model)
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    np.testing.assert_allclose(predict(pruned, x), predict(model, x), rtol=1e-5, atol=1e-5)


def test_dropout_scaling_follows_the_kept_fraction_over_several_steps():
    model = keras_anneal.prune_model(keras.Sequential(
        [keras.Input((8,)), L.Dropout(0.5), L.Dense(4)]))
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((64, 8), "float32"), np.ones((64, 4), "float32")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[
        keras_anneal.AnnealedPruning(keras_anneal.schedules.FSA(0.75, end_fraction=0.5), frequency=2),
        keras_anneal.DropoutScaling(frequency=2)])
    assert model.layers[0].rate == pytest.approx(0.25, abs=0.01)


def test_attention_units_are_each_heads_each_index():
    # query/key/value kernels are (dim, heads, head_dim): a unit is one (head, index).
    inputs = keras.Input((5, 8))
    model = keras.Model(inputs, L.MultiHeadAttention(4, 2, name="mha")(inputs, inputs))
    (layer,) = keras_anneal.masked_layers(keras_anneal.prune_model(model))
    assert layer.unit_axes == [2, 2, 2, 1]
    assert [tuple(b.shape) for b in layer.unit_biases] == [(4, 2), (4, 2), (4, 2), (8,)]
    pruned = keras.Model(inputs, layer(inputs, inputs))
    # 256 weights, 32 units: at most 224 can go; 217 do.
    assert keras_anneal.prune(pruned, sparsity=0.85, allocation="global").pruned == 217
    for mask, axes in zip(layer.get_masks(), layer.unit_axes):
        units = mask.reshape(-1, math.prod(mask.shape[mask.ndim - axes:]))
        assert units.any(axis=0).all()  # Every unit keeps an incoming weight.


def test_unit_pruning_of_attention_zeroes_the_bias_of_each_dead_head_index():
    inputs = keras.Input((5, 8))
    attention = L.MultiHeadAttention(4, 2, bias_initializer="ones")
    model = keras_anneal.prune_model(keras.Model(inputs, L.Dense(3)(attention(inputs, inputs))))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")  # Only the pruning moves them.
    x = np.random.default_rng(0).normal(size=(16, 5, 8)).astype("float32")
    model.fit(x, np.zeros((16, 5, 3)), epochs=1, verbose=0, callbacks=[keras_anneal.AnnealedPruning(
        keras_anneal.schedules.ConstantSparsity(0.5), frequency=1, granularity="unit")])
    layer = keras_anneal.masked_layers(model)[0]
    query_mask, query_bias = layer.get_masks()[0], keras.ops.convert_to_numpy(layer.unit_biases[0])
    alive = query_mask.any(axis=0)  # (heads, head_dim)
    assert alive.sum() == 4 and np.all(query_bias[~alive] == 0) and np.all(query_bias[alive] != 0)


@pytest.mark.parametrize("rnn, steps", [
    (L.LSTM(3), (5, 4)), (L.GRU(3), (5, 4)), (L.SimpleRNN(3), (5, 4)),
    (L.ConvLSTM1D(3, 2, padding="same"), (5, 6, 4)),  # Kernels (2, 4, 12) and (2, 3, 12).
], ids=lambda r: type(r).__name__ if isinstance(r, L.Layer) else "")
def test_a_recurrent_layer_masks_its_input_and_recurrent_kernels(rnn, steps):
    inputs = keras.Input(steps)
    pruned = keras_anneal.prune_model(keras.Model(inputs, rnn(inputs)))
    (layer,) = keras_anneal.masked_layers(pruned)
    kernel, recurrent = layer.prunable_weights
    assert [kernel.shape[-2], recurrent.shape[-2]] == [4, 3]  # Input channels, units.
    assert layer.unit_biases == [None, None]  # The two kernels share each column's bias.
    masks = [(np.arange(math.prod(w.shape)) % 2).reshape(w.shape) for w in (kernel, recurrent)]
    layer.set_masks(masks)
    x = np.random.default_rng(0).normal(size=(2, *steps)).astype("float32")
    # The masked layer computes as the same layer with its pruned weights zeroed.
    plain = keras_anneal.strip(pruned)
    cell = plain.layers[-1].cell
    for weight, expected in zip((cell.kernel, cell.recurrent_kernel), layer.get_masked_weights()):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), expected)
    np.testing.assert_allclose(predict(plain, x), predict(pruned, x), rtol=1e-6, atol=1e-6)
    # And the masks matter: with none pruned, the output is another one.
    layer.set_masks([np.ones(w.shape) for w in (kernel, recurrent)])
    assert not np.allclose(predict(pruned, x), predict(plain, x), atol=1e-4)


def test_compact_keeps_a_recurrent_layer_and_the_dead_units_feeding_it():
    inputs = keras.Input((5, 4))
    x = L.Dense(6, activation="relu", name="feed")(inputs)
    x = L.LSTM(3, name="lstm")(x)
    pruned = keras_anneal.prune_model(keras.Model(inputs, L.Dense(2, name="out")(x)))
    feed = pruned.get_layer("masked_feed")
    mask = np.ones((4, 6), "float32")
    mask[:, :2] = 0.0  # Two dead units, which only the LSTM reads.
    feed.set_masks([mask])
    x = np.random.default_rng(0).normal(size=(4, 5, 4)).astype("float32")
    with pytest.warns(UserWarning, match=r"dead units of these layers were kept.*'feed'"):
        small = keras_anneal.compact(pruned)
    assert small.get_layer("feed").kernel.shape == (4, 6)
    assert small.get_layer("lstm").cell.kernel.shape == (6, 12)
    np.testing.assert_allclose(predict(small, x), predict(pruned, x), rtol=1e-5, atol=1e-5)
