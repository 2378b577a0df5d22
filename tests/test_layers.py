import keras
import numpy as np
import pytest
from conftest import Scale

import keras_anneal
from keras_anneal import Masked

L = keras.layers

# (layer factory, input shape, integer input?)
LAYER_CASES = {
    "Dense": (lambda: L.Dense(4), (3,), False),
    "EinsumDense": (lambda: L.EinsumDense("ab,bc->ac", output_shape=4, bias_axes="c"), (3,), False),
    "Conv1D": (lambda: L.Conv1D(3, 2), (5, 2), False),
    "Conv2D": (lambda: L.Conv2D(3, 2), (5, 5, 2), False),
    "Conv3D": (lambda: L.Conv3D(3, 2), (4, 4, 4, 2), False),
    "Conv1DTranspose": (lambda: L.Conv1DTranspose(3, 2), (5, 2), False),
    "Conv2DTranspose": (lambda: L.Conv2DTranspose(3, 2), (4, 4, 2), False),
    "Conv3DTranspose": (lambda: L.Conv3DTranspose(3, 2), (3, 3, 3, 2), False),
    "DepthwiseConv1D": (lambda: L.DepthwiseConv1D(2), (5, 2), False),
    "DepthwiseConv2D": (lambda: L.DepthwiseConv2D(2), (5, 5, 2), False),
    "SeparableConv1D": (lambda: L.SeparableConv1D(3, 2), (5, 2), False),
    "SeparableConv2D": (lambda: L.SeparableConv2D(3, 2), (5, 5, 2), False),
    "Embedding": (lambda: L.Embedding(10, 4), (5,), True),
}


def make_inputs(shape, integer, n=6, seed=0):
    rng = np.random.default_rng(seed)
    if integer:
        return rng.integers(0, 10, size=(n,) + shape).astype("int32")
    return rng.normal(size=(n,) + shape).astype("float32")


def half_masks(layer, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random(w.shape) < 0.5).astype("float32") for w in layer.prunable_weights]


def wrapped_model(name):
    factory, shape, integer = LAYER_CASES[name]
    inputs = keras.Input(shape, dtype="int32" if integer else "float32")
    layer = Masked(factory())
    model = keras.Model(inputs, L.Flatten()(layer(inputs)))
    return model, layer, make_inputs(shape, integer)


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_pruned_weights_do_not_affect_the_output(name):
    model, layer, x = wrapped_model(name)
    masks = half_masks(layer)
    layer.set_masks(masks)
    before = keras.ops.convert_to_numpy(model(x))
    # Blow up the stored values of the pruned weights: the output must not move.
    for weight, mask in zip(layer.prunable_weights, masks):
        value = keras.ops.convert_to_numpy(weight)
        weight.assign(np.where(mask == 0, 1e3, value))
    after = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_output_equals_plain_layer_with_zeroed_weights(name):
    model, layer, x = wrapped_model(name)
    layer.set_masks(half_masks(layer))
    plain = layer.layer.__class__.from_config(layer.layer.get_config())
    plain.build_from_config(layer.layer.get_build_config())
    zeroed = {id(w): v for w, v in zip(layer.prunable_weights, layer.get_masked_weights())}
    plain.set_weights(
        [zeroed.get(id(w), keras.ops.convert_to_numpy(w)) for w in layer.layer.weights]
    )
    expected = keras.ops.convert_to_numpy(plain(x)).reshape(len(x), -1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_pruned_weights_get_zero_gradient(name):
    model, layer, x = wrapped_model(name)
    masks = half_masks(layer, seed=1)
    layer.set_masks(masks)
    y = np.random.default_rng(2).normal(size=model.output.shape[1:]).astype("float32")
    y = np.broadcast_to(y, (len(x),) + y.shape)
    # Plain SGD: a weight moves if and only if its gradient is non-zero.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [keras.ops.convert_to_numpy(w) for w in layer.prunable_weights]
    model.fit(x, y, epochs=2, batch_size=len(x), verbose=0)
    for weight, old, mask in zip(layer.prunable_weights, before, masks):
        new = keras.ops.convert_to_numpy(weight)
        np.testing.assert_array_equal(new[mask == 0], old[mask == 0])
        assert np.any(new[mask == 1] != old[mask == 1])
    # Masks are not trained.
    for mask, expected in zip(layer.get_masks(), masks):
        np.testing.assert_array_equal(mask, expected)


def test_a_weight_regularizer_charges_only_the_kept_weights(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6,)), L.Dense(8, kernel_regularizer=keras.regularizers.L2(0.1), name="a"),
        L.Dense(2, name="b")]))
    layer = keras_anneal.masked_layers(model)[0]
    layer.set_masks(half_masks(layer, seed=1))
    kept = layer.get_masked_weights()[0]
    (penalty,) = model.losses
    assert float(keras.ops.convert_to_numpy(penalty)) == pytest.approx(0.1 * np.sum(kept**2), rel=1e-5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    stripped = keras_anneal.strip(model)
    for each in (model, stripped):
        each.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    assert model.evaluate(x, y, verbose=0) == pytest.approx(stripped.evaluate(x, y, verbose=0), rel=1e-5)
    before = keras.ops.convert_to_numpy(layer.prunable_weights[0])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    pruned = layer.get_masks()[0] == 0  # Not decayed by the penalty: no gradient at all.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.prunable_weights[0])[pruned],
                                  before[pruned])
    path = str(tmp_path / "regularized.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert float(keras.ops.convert_to_numpy(loaded.losses[0])) == pytest.approx(
        float(keras.ops.convert_to_numpy(model.losses[0])), rel=1e-5)
    assert loaded.layers[0].layer.get_config()["kernel_regularizer"] is not None


def test_a_frozen_layers_wrapper_is_frozen_and_unfreezes_with_it():
    layer = L.Dense(3)
    layer.build((None, 4))
    layer.trainable = False
    masked = Masked(layer)
    masked.build((None, 4))
    assert not masked.trainable and not masked.trainable_weights
    masked.trainable = True
    assert layer.trainable and len(masked.trainable_weights) == 2


def test_masks_are_ones_non_trainable_and_named_after_the_weight():
    layer = Masked(L.SeparableConv2D(3, 2, name="sep"))
    layer.build((None, 5, 5, 2))
    assert layer.name == "masked_sep"
    assert [m.name for m in layer.masks] == ["depthwise_kernel_mask", "pointwise_kernel_mask"]
    assert all(not m.trainable for m in layer.masks)
    assert all(np.all(m == 1) for m in layer.get_masks())
    assert [w.name for w in layer.prunable_weights] == ["depthwise_kernel", "pointwise_kernel"]
    assert layer.sparsity == 0.0


def test_sparsity_is_weighted_by_weight_count():
    layer = Masked(L.SeparableConv1D(4, 2))
    layer.build((None, 5, 3))
    depthwise, pointwise = [np.ones(w.shape) for w in layer.prunable_weights]
    depthwise[...] = 0  # 6 weights, all pruned.
    layer.set_masks([depthwise, pointwise])  # pointwise: 12 weights, none pruned.
    assert layer.sparsity == pytest.approx(6 / 18)


def test_custom_layer_with_get_prunable_weights():
    layer = Masked(Scale())
    x = np.ones((2, 4), "float32")
    layer(x)
    layer.set_masks([np.array([1, 0, 1, 0])])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), [[1, 0, 1, 0]] * 2)


def test_embedding_keras_mask_passes_through():
    inputs = keras.Input((4,), dtype="int32")
    embedded = Masked(L.Embedding(10, 3, mask_zero=True))(inputs)
    outputs = L.GlobalAveragePooling1D()(embedded)
    model = keras.Model(inputs, outputs)
    x = np.array([[1, 2, 0, 0]], "int32")
    layer = model.layers[1]
    expected = keras.ops.convert_to_numpy(layer.layer.embeddings)[[1, 2]].mean(axis=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x))[0], expected, rtol=1e-6)


def test_config_round_trip():
    layer = Masked(L.Conv2D(5, 3, padding="same", name="conv"), name="wrapped")
    restored = Masked.from_config(layer.get_config())
    assert restored.name == "wrapped"
    assert restored.layer.get_config() == layer.layer.get_config()
    restored.build((None, 6, 6, 2))
    assert [(m.name, tuple(m.shape)) for m in restored.masks] == [("kernel_mask", (3, 3, 2, 5))]


@pytest.mark.parametrize("adapt", [lambda d: d.enable_lora(2), lambda d: d.quantize("int8")],
                         ids=["lora", "int8"])
def test_lora_and_quantized_layers_are_rejected(adapt):
    dense = L.Dense(4)
    dense.build((None, 3))
    adapt(dense)
    with pytest.raises(ValueError, match="LoRA or quantization"):
        Masked(dense)


def test_mixed_precision_layer_keeps_its_policy():
    layer = Masked(L.Dense(4, dtype="mixed_bfloat16"))
    y = layer(np.ones((2, 3), "float32"))
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert layer.masks[0].dtype == "float32"  # The variable dtype of the kernel.
    layer.set_masks([np.zeros((3, 4))])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.cast(layer(np.ones((2, 3))), "float32")),
                                  np.zeros((2, 4)))


def test_masks_of_an_unbuilt_layer_are_a_clear_error():
    with pytest.raises(ValueError, match="not built yet"):
        Masked(L.Dense(3)).masks


@pytest.mark.parametrize(
    "argument, error, message",
    [
        ("dense", TypeError, "must be a `keras.layers.Layer`.*layer='dense'"),
        (L.Dropout(0.5, name="drop"), ValueError, r"prunable weights.*Received: layer=Dropout\(name='drop'\)"),
        (L.BatchNormalization(), ValueError, "BatchNormalization"),
        (Masked(L.Dense(2)), ValueError, "already a `Masked` layer"),
    ],
)
def test_wrapping_a_non_prunable_argument_is_an_error(argument, error, message):
    with pytest.raises(error, match=message):
        Masked(argument)


def test_bad_masks_are_rejected_and_nothing_changes():
    layer = Masked(L.SeparableConv1D(4, 2))
    layer.build((None, 5, 3))
    depthwise, pointwise = [np.zeros(w.shape) for w in layer.prunable_weights]
    with pytest.raises(ValueError, match="must hold 2 arrays.*Received: 1"):
        layer.set_masks([depthwise])
    with pytest.raises(ValueError, match=r"pointwise_kernel_mask.*shape \(1, 3, 4\).*Received: shape=\(3, 4\)"):
        layer.set_masks([depthwise, np.zeros((3, 4))])
    with pytest.raises(ValueError, match="only 0 and 1"):
        layer.set_masks([depthwise, pointwise + 0.5])
    # The first, valid mask of each failed call was not written either.
    assert all(np.all(mask == 1) for mask in layer.get_masks())


def test_a_separable_convolutions_bias_goes_with_its_pointwise_kernel():
    # filters == in_channels * depth_multiplier: the shapes alone cannot tell.
    layer = Masked(L.SeparableConv2D(6, 3, depth_multiplier=2))
    layer.build((None, 8, 8, 3))
    depthwise, pointwise = layer.unit_biases
    assert depthwise is None and pointwise is layer.layer.bias


def test_a_registered_weight_name_the_layer_lacks_is_named_when_wrapped():
    class Gain(keras.layers.Layer):
        def build(self, shape):
            self.scale = self.add_weight(shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.scale

    keras_anneal.register_prunable_layer(Gain, ["scael"])
    with pytest.raises(ValueError, match=r"register_prunable_layer.*\['scael'\].*weights=\['scael'\]"):
        Masked(Gain())(np.ones((1, 3), "float32"))


def test_masked_delegates_its_output_shape_to_the_wrapped_layer():
    assert Masked(keras.layers.Dense(2)).compute_output_shape((None, 3)) == (None, 2)
    outputs = keras.layers.TimeDistributed(Masked(keras.layers.Dense(2)))(keras.Input((5, 3)))
    assert tuple(outputs.shape) == (None, 5, 2)
