import os
import warnings

import keras
import numpy as np
import pytest
from conftest import DenseBlock
from conftest import Scale

import keras_anneal
from keras_anneal import Masked

L = keras.layers


def small_cnn():
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Dropout(0.25, name="dropout")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(8, activation="relu", name="dense")(x)
    outputs = L.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs, name="cnn")


def images(n=5):
    return np.random.default_rng(0).normal(size=(n, 8, 8, 1)).astype("float32")


def weights_of(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def prune_randomly(model, fraction=0.5, seed=0):
    rng = np.random.default_rng(seed)
    for layer in keras_anneal.masked_layers(model):
        layer.set_masks([(rng.random(w.shape) >= fraction) for w in layer.prunable_weights])


def test_prune_model_wraps_every_supported_layer_and_keeps_weights():
    model = small_cnn()
    pruned = keras_anneal.prune_model(model)
    wrapped = {layer.layer.name for layer in keras_anneal.masked_layers(pruned)}
    assert wrapped == {"conv", "dense", "head"}
    assert all(not isinstance(layer, Masked) for layer in model.layers)  # Original untouched.
    x = images()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(x)), keras.ops.convert_to_numpy(model(x)), rtol=1e-6
    )
    # Independent copies: changing the pruned model leaves the original alone.
    pruned.get_layer("masked_dense").layer.kernel.assign(np.zeros((36, 8)))
    assert np.any(keras.ops.convert_to_numpy(model.get_layer("dense").kernel) != 0)


def test_prune_model_on_sequential():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3), L.Dropout(0.1), L.Dense(2)])
    pruned = keras_anneal.prune_model(model)
    assert [type(layer).__name__ for layer in pruned.layers] == ["Masked", "Dropout", "Masked"]


@pytest.mark.parametrize(
    "layers, expected",
    [
        (["dense", "head"], {"dense", "head"}),
        ([L.Dense], {"dense", "head"}),
        ("conv", {"conv"}),
        ([L.Conv2D, "head"], {"conv", "head"}),
    ],
)
def test_prune_model_wraps_only_the_selected_layers(layers, expected):
    pruned = keras_anneal.prune_model(small_cnn(), layers=layers)
    assert {layer.layer.name for layer in keras_anneal.masked_layers(pruned)} == expected


def test_prune_model_selects_custom_prunable_layers_by_class():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.Dense(2, name="dense")(Scale(name="scale")(inputs)))
    pruned = keras_anneal.prune_model(model, layers=[Scale])
    assert [layer.layer.name for layer in keras_anneal.masked_layers(pruned)] == ["scale"]


def test_prune_model_keeps_existing_masks():
    pruned = keras_anneal.prune_model(small_cnn())
    prune_randomly(pruned)
    again = keras_anneal.prune_model(pruned)
    for a, b in zip(keras_anneal.masked_layers(pruned), keras_anneal.masked_layers(again), strict=True):
        for mask_a, mask_b in zip(a.get_masks(), b.get_masks(), strict=True):
            np.testing.assert_array_equal(mask_a, mask_b)


def test_nested_models_are_found_and_wrapped():
    block = keras.Sequential([keras.Input((6,)), L.Dense(5, name="inner")], name="block")
    inputs = keras.Input((6,))
    outputs = L.Dense(2, name="outer")(block(inputs))
    model = keras.Model(inputs, outputs)
    pruned = keras_anneal.prune_model(model)
    assert {layer.layer.name for layer in keras_anneal.masked_layers(pruned)} == {"inner", "outer"}
    prune_randomly(pruned)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    stripped = keras_anneal.strip(pruned)
    assert keras_anneal.masked_layers(stripped) == []
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(stripped(x)), keras.ops.convert_to_numpy(pruned(x)), rtol=1e-6, atol=1e-6
    )


def test_masked_layers_inside_a_subclassed_model_are_found():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.body = Masked(L.Dense(4))
            self.head = L.Dense(2)

        def call(self, x):
            return self.head(self.body(x))

    net = Net()
    net(np.ones((1, 3), "float32"))
    assert keras_anneal.masked_layers(net) == [net.body]
    report = keras_anneal.sparsity_report(net)
    assert report.total == 12


def test_strip_bakes_zeros_and_keeps_predictions():
    pruned = keras_anneal.prune_model(small_cnn())
    prune_randomly(pruned, fraction=0.6)
    x = images()
    stripped = keras_anneal.strip(pruned)
    assert not any(isinstance(layer, Masked) for layer in stripped.layers)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(stripped(x)), keras.ops.convert_to_numpy(pruned(x)), rtol=1e-5, atol=1e-6
    )
    for masked in keras_anneal.masked_layers(pruned):
        kernel = keras.ops.convert_to_numpy(stripped.get_layer(masked.layer.name).kernel)
        (mask,) = masked.get_masks()
        assert np.all(kernel[mask == 0] == 0.0)
        np.testing.assert_array_equal(kernel[mask == 1], keras.ops.convert_to_numpy(masked.layer.kernel)[mask == 1])
    # The masked model still holds the raw values: only the copy is baked.
    raw = keras.ops.convert_to_numpy(pruned.get_layer("masked_dense").layer.kernel)
    assert np.count_nonzero(raw == 0) == 0


def test_save_and_load_keep_predictions_and_masks(tmp_path):
    pruned = keras_anneal.prune_model(small_cnn())
    prune_randomly(pruned, fraction=0.7)
    path = os.path.join(tmp_path, "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)  # No custom_objects needed.
    x = images()
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(pruned(x))
    )
    for a, b in zip(keras_anneal.masked_layers(pruned), keras_anneal.masked_layers(loaded), strict=True):
        assert a.name == b.name
        for mask_a, mask_b in zip(a.get_masks(), b.get_masks(), strict=True):
            np.testing.assert_array_equal(mask_a, mask_b)


def test_output_layers_keep_their_names_so_losses_and_targets_keyed_by_them_still_work(tmp_path):
    inputs = keras.Input((8,), name="features")
    trunk = L.Dense(16, activation="relu", name="trunk")(inputs)
    model = keras.Model(inputs, [L.Dense(3, activation="softmax", name="cls")(trunk),
                                 L.Dense(1, name="reg")(trunk)])
    pruned = keras_anneal.prune_model(model)
    assert pruned.output_names == model.output_names == ["cls", "reg"]
    assert [layer.name for layer in keras_anneal.masked_layers(pruned)] == ["masked_trunk", "cls", "reg"]
    pruned.compile("sgd", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                   metrics={"cls": ["accuracy"]})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8)).astype("float32")
    targets = {"cls": rng.integers(0, 3, 32), "reg": rng.normal(size=(32, 1)).astype("float32")}
    logs = pruned.fit(x, targets, epochs=1, verbose=0).history
    assert {"cls_loss", "reg_loss", "cls_accuracy"} <= set(logs)  # The original model's log keys.
    path = os.path.join(tmp_path, "two_heads.keras")
    pruned.save(path)
    assert keras.saving.load_model(path).output_names == ["cls", "reg"]
    assert keras_anneal.compact(pruned).output_names == ["cls", "reg"]


def test_input_layers_keep_their_names_through_prune_strip_and_compact():
    # `keras.models.clone_model` would name an unnamed input after its
    # tensor ('keras_tensor'); the names feed dict inputs and export signatures.
    unnamed = keras.Input((4,))
    inner = keras.Model(unnamed, L.Dense(6, activation="relu")(unnamed), name="inner")
    named = keras.Input((3,), name="extra")
    first = keras.Input((4,))
    x = L.Concatenate()([inner(first), L.Dense(2)(named)])
    model = keras.Model({"main": first, "extra": named}, L.Dense(2, name="out")(x))

    def input_names(graph):
        return sorted(layer.name for layer in graph.layers if isinstance(layer, L.InputLayer))

    pruned = keras_anneal.prune_model(model)
    prune_randomly(pruned)
    for graph in (pruned, keras_anneal.strip(pruned), keras_anneal.compact(pruned)):
        assert input_names(graph) == input_names(model)
        assert input_names(graph.get_layer("inner")) == input_names(inner)
    rng = np.random.default_rng(0)
    data = {"main": rng.normal(size=(8, 4)).astype("float32"),
            "extra": rng.normal(size=(8, 3)).astype("float32")}
    np.testing.assert_allclose(keras.ops.convert_to_numpy(pruned(data)),
                               keras.ops.convert_to_numpy(keras_anneal.strip(pruned)(data)),
                               rtol=1e-6, atol=1e-6)


def test_a_model_compiled_with_unregistered_functions_is_pruned_stripped_and_compacted():
    def doubled_loss(y_true, y_pred):  # Neither is registered for serialization.
        return 2.0 * keras.losses.mean_squared_error(y_true, y_pred)

    def mean_output(y_true, y_pred):
        return keras.ops.mean(y_pred)

    def compiled(model):
        model.compile(keras.optimizers.Adam(0.01), loss=doubled_loss, metrics=[mean_output])
        return model

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 8)).astype("float32"), rng.normal(size=(32, 3)).astype("float32")
    base = compiled(keras.Sequential([keras.Input((8,)), L.Dense(6, activation="relu"), L.Dense(3)]))
    base.fit(x, y, epochs=1, verbose=0)
    pruned = keras_anneal.prune_model(base)
    assert base.compiled and not pruned.compiled  # As documented; the original is left alone.
    compiled(pruned).fit(x, y, epochs=2, verbose=0, callbacks=[
        keras_anneal.AnnealedPruning(0.5, granularity="unit", frequency=1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        stripped = keras_anneal.strip(pruned)
    # Compiled like the source: same loss and metric, a new optimizer of its config.
    assert stripped.compiled and stripped.optimizer is not pruned.optimizer
    assert stripped.optimizer.learning_rate.numpy() == pytest.approx(0.01)
    np.testing.assert_allclose(stripped.evaluate(x, y, verbose=0),
                               pruned.evaluate(x, y, verbose=0), rtol=1e-5)
    small = keras_anneal.compact(pruned)
    assert not small.compiled and small.layers[0].units == 3
    carried = keras_anneal.compact(pruned, carry_optimizer=True)
    assert carried.optimizer.iterations.numpy() == pruned.optimizer.iterations.numpy()
    np.testing.assert_allclose(carried.evaluate(x, y, verbose=0),
                               pruned.evaluate(x, y, verbose=0), rtol=1e-5)


def test_sparsity_report_counts_per_layer_and_weighted_overall():
    pruned = keras_anneal.prune_model(small_cnn())
    conv, dense, head = keras_anneal.masked_layers(pruned)
    conv.set_masks([np.zeros(conv.prunable_weights[0].shape)])  # 36 of 36 pruned
    head_mask = np.ones(head.prunable_weights[0].shape)
    head_mask[:2] = 0  # 6 of 24 pruned
    head.set_masks([head_mask])
    report = keras_anneal.sparsity_report(pruned)
    assert [(r.name, r.pruned, r.total) for r in report.layers] == [
        ("masked_conv", 36, 36),
        ("masked_dense", 0, 288),
        ("head", 6, 24),
    ]
    assert report.pruned == 42 and report.total == 348
    assert report.sparsity == pytest.approx(42 / 348)  # Not the mean of layer fractions.
    assert report.to_dict()["layers"]["head"]["sparsity"] == pytest.approx(0.25)
    assert "overall" in str(report) and "12.07%" in str(report)


def test_bad_layers_argument_is_an_error_and_leaves_the_model_alone():
    model = small_cnn()
    before = weights_of(model)
    with pytest.raises(ValueError, match=r"not in the model: \['desne'\].*'dense'"):
        keras_anneal.prune_model(model, layers=["desne"])
    with pytest.raises(ValueError, match=r"no prunable weight: \['dropout'\]"):
        keras_anneal.prune_model(model, layers=["dropout"])
    with pytest.raises(ValueError, match=r"no prunable weight: \['MaxPooling2D'\]"):
        keras_anneal.prune_model(model, layers=[L.MaxPooling2D])
    with pytest.raises(TypeError, match="Received: 3 of type int"):
        keras_anneal.prune_model(model, layers=[3])
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dense"
    ]
    for old, new in zip(before, weights_of(model)):
        np.testing.assert_array_equal(old, new)


def test_unbuilt_subclassed_and_non_models_are_rejected():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="must be built.*Received: model 'net.*' of class Net"):
        keras_anneal.prune_model(Net())
    built = Net()
    built(np.ones((1, 2), "float32"))
    with pytest.raises(ValueError, match="holds no prunable weight"):
        keras_anneal.prune_model(built)
    with pytest.raises(TypeError, match="not subclassed ones. Received: model of class Net"):
        keras_anneal.strip(built)
    with pytest.raises(TypeError, match="must be a `keras.Model`"):
        keras_anneal.prune_model("model")
    with pytest.raises(TypeError, match="must be a `keras.Model`"):
        keras_anneal.sparsity_report([1, 2])


def test_a_model_without_masks_is_reported_from_its_zeros():
    pruned = keras_anneal.prune_model(small_cnn())
    conv, dense, head = keras_anneal.masked_layers(pruned)
    head_mask = np.ones(head.prunable_weights[0].shape)
    head_mask[:2] = 0  # 6 of 24 pruned
    head.set_masks([head_mask])
    stripped = keras_anneal.sparsity_report(keras_anneal.strip(pruned))
    assert [(r.name, r.pruned, r.total) for r in stripped.layers] == [
        ("conv", 0, 36), ("dense", 0, 288), ("head", 6, 24)]
    assert stripped.sparsity == keras_anneal.sparsity_report(pruned).sparsity
    assert keras_anneal.sparsity_report(small_cnn()).pruned == 0  # Dense: no exact zero.


def test_class_selection_warns_of_matching_layers_inside_an_unwrapped_custom_layer():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(DenseBlock(4, name="block")(inputs)))
    for selection in ([keras.layers.Dense], keras.layers.Dense):
        with pytest.warns(UserWarning, match=r"\['inner'\] inside 'block'.*add that layer's name"):
            pruned = keras_anneal.prune_model(model, layers=selection)
    assert [layer.name for layer in keras_anneal.masked_layers(pruned)] == ["head"]  # An output keeps its name.
    with warnings.catch_warnings(record=True) as caught:  # Naming the block wraps it, inner Dense and all.
        warnings.simplefilter("always")
        pruned = keras_anneal.prune_model(model, layers=[keras.layers.Dense, "block"])
    assert not [w for w in caught if "wrapped none" in str(w.message)]
    assert sorted(layer.name for layer in keras_anneal.masked_layers(pruned)) == ["head", "masked_block"]


def test_prune_model_warns_of_the_training_steps_a_subclassed_model_loses():
    class Plain(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    class OwnStep(Plain):
        def train_step(self, data):
            return super().train_step(data)

    x = np.zeros((2, 3), "float32")
    plain, own = Plain(), OwnStep()
    plain(x), own(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        keras_anneal.prune_model(plain)
    with pytest.warns(UserWarning, match=r"does not run its own \['train_step'\]"):
        pruned = keras_anneal.prune_model(own)
    assert isinstance(pruned, keras.Sequential)
    # Wrapped whole, its one Masked layer makes the output: unit pruning says it removes nothing.
    pruned.compile(optimizer="sgd", loss="mse")
    with pytest.warns(UserWarning, match=r"granularity='unit'\) will remove nothing"):
        pruned.fit(np.ones((8, 3), "float32"), np.ones((8, 2), "float32"), epochs=1, verbose=0,
                   callbacks=[keras_anneal.AnnealedPruning(0.5, frequency=1, granularity="unit")])


def test_a_masked_model_quantized_by_keras_is_refused_and_its_stripped_copy_quantizes():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)]))
    rng = np.random.default_rng(0)
    for layer in keras_anneal.masked_layers(model):
        layer.set_masks([(rng.random(m.shape) < 0.5).astype("float32") for m in layer.masks])
    x = rng.normal(size=(4, 8)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))
    stripped = keras_anneal.strip(model)
    pruned = model.layers[0].get_masks()[0] == 0
    model.quantize("int8")  # Keras reaches the Dense layers inside the Masked ones.
    for use in (model.predict, lambda _: keras_anneal.strip(model),
                lambda _: keras_anneal.sparsity_report(model)):
        with pytest.raises(ValueError, match=r"inside the Masked layer .*quantized.*"
                                             r"\{'dense': 'int8'\}.*stripped = keras_anneal.strip\(model\)"):
            use(x)
    report = keras_anneal.sparsity_report(stripped)
    stripped.quantize("int8")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(stripped(x)), expected, atol=0.05)
    codes = keras.ops.convert_to_numpy(stripped.layers[0].kernel)  # int8, one scale per unit.
    assert codes.dtype == np.int8 and pruned.any() and np.all(codes[pruned] == 0)
    with pytest.raises(ValueError, match=r"sparsity_report reads float weights.*quantized.*"
                                         r"report the model before `quantize`"):
        keras_anneal.sparsity_report(stripped)
    assert 0.4 < report.sparsity < 0.6
