"""Issue 10's moonshot: `compact(model, carry_optimizer=True)` mid-training."""

import keras
import numpy as np
import pytest

import keras_anneal


def remove_units(model, name, next_name, units):
    """Removes `units` of layer `name` as unit pruning does: the weights into
    and out of them masked, their biases zero."""
    wrappers = {layer.layer.name: layer for layer in keras_anneal.masked_layers(model)}
    layer, reader = wrappers[name], wrappers[next_name]
    mask = layer.get_masks()[0]
    mask[..., units] = 0
    layer.set_masks([mask])
    bias = layer.layer.bias
    bias.assign(np.where(np.isin(np.arange(bias.shape[0]), units), 0.0,
                         keras.ops.convert_to_numpy(bias)))
    mask = reader.get_masks()[0]
    if mask.ndim == 2 and mask.shape[0] != layer.get_masks()[0].shape[-1]:  # Behind Flatten.
        rows = mask.reshape(-1, layer.get_masks()[0].shape[-1], mask.shape[-1])
        rows[:, units] = 0
        mask = rows.reshape(mask.shape)
    else:
        mask[..., units, :] = 0
    reader.set_masks([mask])


OPTIMIZERS = {
    "adam-cosine": lambda: keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(0.02, 40)),
    "adam-amsgrad": lambda: keras.optimizers.Adam(0.01, amsgrad=True),
    "sgd-nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "adadelta": lambda: keras.optimizers.Adadelta(1.0),
}


def trained_model(x, y, functional=False, optimizer="adam-cosine"):
    keras.utils.set_random_seed(0)
    layers = [
        keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
        keras.layers.BatchNormalization(name="norm"),
        keras.layers.Flatten(),
        keras.layers.Dense(8, activation="tanh", name="hidden"),
        keras.layers.Dense(3, name="out"),
    ]
    if functional:
        inputs = keras.Input((6, 6, 2))
        outputs = inputs
        for layer in layers:
            outputs = layer(outputs)
        model = keras.Model(inputs, outputs)
    else:
        model = keras.Sequential([keras.Input((6, 6, 2)), *layers])
    model = keras_anneal.prune_model(model)
    remove_units(model, "conv", "hidden", [1, 4])
    remove_units(model, "hidden", "out", [0, 5, 6])
    model.compile(OPTIMIZERS[optimizer](), loss="mse", metrics=["mae"])
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return model


def data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(32, 6, 6, 2)).astype("float32"),
            rng.normal(size=(32, 3)).astype("float32"))


@pytest.mark.parametrize("functional, optimizer", [
    (False, "adam-cosine"), (True, "adam-cosine"), (False, "adam-amsgrad"),
    (False, "sgd-nesterov"), (False, "adadelta"),
])
def test_training_goes_on_in_the_compacted_model_as_in_the_masked_one(functional, optimizer):
    x, y = data()
    model = trained_model(x, y, functional, optimizer)
    compacted = keras_anneal.compact(model, carry_optimizer=True)
    assert compacted.get_layer("conv").filters == 4
    assert compacted.get_layer("hidden").units == 5
    assert int(compacted.optimizer.iterations) == int(model.optimizer.iterations) == 8
    assert type(compacted.optimizer) is type(model.optimizer) and compacted.loss == "mse"

    restarted = keras_anneal.compact(model)  # The same weights, a fresh optimizer.
    restarted.compile(OPTIMIZERS[optimizer](), loss="mse")
    for each in (model, compacted, restarted):
        each.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(compacted.predict(x, verbose=0), expected, atol=1e-5, rtol=1e-4)
    # Without the carried moments and step counter, training takes another path.
    assert np.abs(restarted.predict(x, verbose=0) - expected).max() > 1e-3


def test_moments_are_sliced_like_their_weights():
    x, y = data()
    model = trained_model(x, y)
    compacted = keras_anneal.compact(model, carry_optimizer=True)
    kept_filters, kept_units = [0, 2, 3, 5], [1, 2, 3, 4, 7]
    for slot in ("momentum", "velocity"):
        old, new = slots(model, slot), slots(compacted, slot)
        np.testing.assert_array_equal(new["conv/kernel"], old["conv/kernel"][..., kept_filters])
        np.testing.assert_array_equal(new["norm/gamma"], old["norm/gamma"][kept_filters])
        hidden = old["hidden/kernel"].reshape(4, 4, 6, 8)[:, :, kept_filters]
        np.testing.assert_array_equal(new["hidden/kernel"], hidden.reshape(-1, 8)[:, kept_units])
        np.testing.assert_array_equal(new["out/kernel"], old["out/kernel"][kept_units])
        np.testing.assert_array_equal(new["out/bias"], old["out/bias"])


def slots(model, slot):
    """`"layer/weight"` -> the optimizer's `slot` variable of that weight."""
    variables = {v.name: v for v in model.optimizer.variables}
    return {"/".join(w.path.split("/")[-2:]):
            keras.ops.convert_to_numpy(variables[w.path.replace("/", "_") + "_" + slot])
            for w in model.trainable_variables}


def test_annealed_units_train_on_alike_after_compaction():
    """The real path: `granularity="unit"` removes the units during `fit`."""
    x, y = data()
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="relu", name="hidden"),
        keras.layers.Dense(3, name="out"),
    ]))
    model.compile(keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[keras_anneal.AnnealedPruning(
                  keras_anneal.schedules.FSA(0.5, end_fraction=1.0), frequency=1,
                  granularity="unit")])
    compacted = keras_anneal.compact(model, carry_optimizer=True)
    assert (compacted.get_layer("conv").filters, compacted.get_layer("hidden").units) == (4, 5)
    np.testing.assert_allclose(compacted.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5, rtol=1e-4)
    assert int(compacted.optimizer.iterations) == int(model.optimizer.iterations) == 8
    before = compacted.evaluate(x, y, verbose=0)
    history = compacted.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert history.history["loss"][-1] < before
    # The removed units' biases stay at zero in the masked model (no gradient,
    # no moments), so it trains on as its compacted copy does.
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(compacted.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5, rtol=1e-4)


def test_moments_not_shaped_like_their_weight_are_refused():
    x, y = data()
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(5, name="a"), keras.layers.Dense(2, name="b")]))
    remove_units(model, "a", "b", [2])
    model.compile(keras.optimizers.Adafactor(), "mse")
    model.fit(x.reshape(32, -1)[:, :4], y[:, :2], batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="not shaped like the weight.*carry_optimizer=False"):
        keras_anneal.compact(model, carry_optimizer=True)
    assert keras_anneal.compact(model).get_layer("a").units == 4


def test_carry_optimizer_needs_a_compiled_model_and_changes_nothing():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(5, name="a"), keras.layers.Dense(2, name="b")]))
    remove_units(model, "a", "b", [2])
    masks = [m.copy() for layer in model.layers for m in layer.get_masks()]
    with pytest.raises(ValueError, match="carry_optimizer=True.*compiled"):
        keras_anneal.compact(model, carry_optimizer=True)
    assert all(np.array_equal(a, b) for a, b in zip(
        masks, [m for layer in model.layers for m in layer.get_masks()]))


def test_weights_pruned_inside_kept_units_are_reported():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(5, name="a"), keras.layers.Dense(2, name="b")]))
    mask = np.ones((4, 5))
    mask[0, 1] = mask[2, 3] = 0  # Two weights, no whole unit.
    model.get_layer("masked_a").set_masks([mask])
    model.compile("sgd", "mse")
    with pytest.warns(UserWarning, match="2 pruned weights inside kept units"):
        keras_anneal.compact(model, carry_optimizer=True)
