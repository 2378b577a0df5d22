"""N2PS (issue 9): whole hidden units removed by significance."""

import keras
import numpy as np
import pytest

import keras_anneal
from keras_anneal import unit_pruning


def mlp():
    keras.utils.set_random_seed(0)
    return keras_anneal.prune_model(keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu", bias_initializer="ones", name="h1"),
        keras.layers.Dense(5, activation="tanh", bias_initializer="ones", name="h2"),
        keras.layers.Dense(3, name="out"),
    ]))


def data():
    return np.random.default_rng(0).normal(size=(64, 6)).astype("float32")


def test_significance_is_the_normalized_contribution_to_the_next_layer():
    activations = np.array([[1.0, -2.0, 0.0], [3.0, 0.0, 0.0]])  # mean |a| = 2, 1, 0
    outgoing = np.array([[1.0, 1.0], [0.0, -3.0], [5.0, 5.0]])   # sum |v| = 2, 3, 10
    np.testing.assert_allclose(unit_pruning.unit_significance(activations, outgoing),
                               [4 / 7, 3 / 7, 0.0])


def test_n2ps_removes_whole_units_weights_and_biases():
    model = mlp()
    x = data()
    report = keras_anneal.prune(model, "n2ps", sparsity=0.5, data=x)
    h1, h2, out = keras_anneal.masked_layers(model)
    m1, m2, m3 = (layer.get_masks()[0] for layer in (h1, h2, out))
    gone1, gone2 = ~m1.any(axis=0), ~m2.any(axis=0)
    assert (gone1.sum(), gone2.sum()) == (4, 2)  # floor(0.5 * 8), floor(0.5 * 5).
    assert np.all(m1[:, ~gone1] == 1) and np.all(m2[gone1, :] == 0)  # Out of h1's units too.
    assert np.all(m3[gone2, :] == 0) and np.all(m3[~gone2, :] == 1)
    assert m3.any(axis=0).all()  # Output units are never removed.
    for layer, gone in ((h1, gone1), (h2, gone2)):
        bias = keras.ops.convert_to_numpy(layer.layer.bias)
        assert np.all(bias[gone] == 0) and np.all(bias[~gone] == 1)
    # h1: 4 columns of 6; h2: 4 rows of 5 and 2 columns of 8, 4 x 2 counted twice; out: 2 rows of 3.
    assert report.pruned == 4 * 6 + (4 * 5 + 2 * 8 - 4 * 2) + 2 * 3
    # The removed units are the least significant on the data.
    activations = keras.Model(model.inputs, h1.output).predict(x, verbose=0)
    significance = unit_pruning.unit_significance(
        activations, keras.ops.convert_to_numpy(h2.layer.kernel))
    assert significance[gone1].max() <= significance[~gone1].min()
    # Removed units change nothing more: the masked model and strip agree.
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               keras_anneal.strip(model).predict(x, verbose=0), atol=1e-5)


def test_n2ps_is_cumulative():
    model = mlp()
    keras_anneal.prune(model, "n2ps", sparsity=0.25, data=data())
    first = [m.any(axis=0) for m in (layer.get_masks()[0] for layer in keras_anneal.masked_layers(model))]
    keras_anneal.prune(model, "n2ps", sparsity=0.5, data=data())
    second = [m.any(axis=0) for m in (layer.get_masks()[0] for layer in keras_anneal.masked_layers(model))]
    for before, after in zip(first, second):
        assert np.all(~after[~before])  # A removed unit stays removed.
    assert (~second[0]).sum() == 4


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(), r"`data` is required.*data=None"),
        (dict(sparsity=1.0, data=np.ones((4, 6))), r"`sparsity`.*sparsity=1.0"),
        (dict(allocation="global", data=np.ones((4, 6))), r"`allocation` must be 'uniform'"),
    ],
)
def test_n2ps_bad_arguments_leave_the_model_alone(kwargs, pattern):
    model = mlp()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=pattern):
        keras_anneal.prune(model, "n2ps", **{"sparsity": 0.5, **kwargs})
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_n2ps_refuses_layers_that_do_not_chain():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    a = keras.layers.Dense(4, name="a")(inputs)
    b = keras.layers.Dense(3, name="b")(inputs)
    model = keras_anneal.prune_model(keras.Model(inputs, keras.layers.Concatenate()([a, b])))
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="feed the next.*'masked_a' has 4 units.*'masked_b' takes 6"):
        keras_anneal.prune(model, "n2ps", sparsity=0.5, data=data())
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
