"""Issue 10: whole-unit annealing and `compact`, which deletes dead units."""

import warnings

import keras
import numpy as np
import pytest

import keras_anneal
from keras_anneal import schedules
from keras_anneal._backend import sync_backend_state


def set_dead(layer, units, axis=-1):
    """Prunes every incoming weight of `units` of a `Masked` layer."""
    mask = layer.get_masks()[0]
    index = [slice(None)] * mask.ndim
    index[axis] = units
    mask[tuple(index)] = 0
    layer.set_masks([mask])


def same_on_tokens(model, compacted, tokens):
    """Outputs equal on token ids, called directly (no `predict` batching)."""
    np.testing.assert_allclose(keras.ops.convert_to_numpy(compacted(tokens)),
                               keras.ops.convert_to_numpy(model(tokens)), rtol=1e-5, atol=1e-6)


def same_outputs(model, compacted, x):
    np.testing.assert_allclose(model.predict(x, verbose=0), compacted.predict(x, verbose=0),
                               atol=1e-5, rtol=1e-5)


def test_dense_chain_loses_dead_units_and_keeps_its_outputs():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu", name="a"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(5, activation="tanh", name="b"),
        keras.layers.Dense(3, name="out"),
    ]))
    a, b, out = keras_anneal.masked_layers(model)
    set_dead(a, [0, 3, 4])
    set_dead(b, [1])
    compacted = keras_anneal.compact(model)
    dense = [layer for layer in compacted.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [5, 4, 3]
    assert dense[1].kernel.shape == (5, 4)
    assert not any(isinstance(layer, keras_anneal.Masked) for layer in compacted.layers)
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(16, 6)))


def test_dead_unit_with_a_bias_is_folded_into_the_next_bias():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(4, activation="relu", bias_initializer="ones", name="a"),
        keras.layers.Dense(2, name="out"),
    ]))
    set_dead(model.layers[0], [2])  # Outputs relu(1) = 1 whatever the input.
    compacted = keras_anneal.compact(model)
    assert compacted.layers[0].units == 3
    out = model.layers[1].layer
    expected = keras.ops.convert_to_numpy(out.bias) + keras.ops.convert_to_numpy(out.kernel)[2]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(compacted.layers[1].bias), expected,
                               rtol=1e-6)
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(16, 6)))


def test_unit_with_no_outgoing_weight_goes_too():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2),
    ]))
    set_dead(model.layers[1], [1], axis=0)  # Unit 1 of the first layer feeds nothing.
    compacted = keras_anneal.compact(model)
    assert compacted.layers[0].units == 3
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(16, 6)))


def conv_model(padding="valid"):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 2))
    x = keras.layers.Conv2D(6, 3, name="c1", bias_initializer="ones")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(5, 3, padding=padding, activation="relu", name="c2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(3, name="out")(x)
    model = keras.Model(inputs, outputs)
    # Non-trivial BatchNormalization statistics.
    bn = model.layers[2]
    bn.set_weights([w + np.random.default_rng(1).uniform(0.1, 0.5, w.shape) for w in bn.get_weights()])
    return keras_anneal.prune_model(model)


def test_conv_batchnorm_pool_flatten_dense_compacts_exactly():
    model = conv_model()
    c1, c2, out = keras_anneal.masked_layers(model)
    set_dead(c1, [1, 4])  # Constant filters (bias 1, through BN and relu): folded.
    set_dead(c2, [0, 2])
    compacted = keras_anneal.compact(model)
    convs = [layer for layer in compacted.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convs] == [4, 3]
    bn = [layer for layer in compacted.layers if isinstance(layer, keras.layers.BatchNormalization)][0]
    assert bn.gamma.shape == (4,)
    dense = [layer for layer in compacted.layers if isinstance(layer, keras.layers.Dense)][0]
    assert dense.kernel.shape == (3 * 3 * 3, 3)
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(8, 12, 12, 2)))


def test_constant_filter_before_same_padding_is_kept_and_reported():
    model = conv_model(padding="same")
    set_dead(keras_anneal.masked_layers(model)[0], [1])
    with pytest.warns(UserWarning, match=r"dead units of these layers were kept.*c1"):
        compacted = keras_anneal.compact(model)
    assert compacted.get_layer("c1").filters == 6
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(8, 12, 12, 2)))


def test_residual_block_compacts_its_inner_layer_and_keeps_channels_added_to_the_input():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(6, 3, padding="same", name="inner")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="outer")(x)
    x = keras.layers.Activation("relu")(x + inputs)  # Coupled with the input: stays.
    branch = keras.layers.Conv2D(3, 1, name="side")(x)
    x = keras.layers.Concatenate()([x, branch])
    outputs = keras.layers.Dense(2, name="out")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras_anneal.prune_model(keras.Model(inputs, outputs))
    set_dead(model.get_layer("masked_inner"), [1, 4])  # Outgoing weights still there.
    # Bias 0 through a fresh BatchNormalization and relu: they output zeros.
    model.get_layer("masked_inner").layer.bias.assign(np.zeros(6))
    set_dead(model.get_layer("masked_outer"), [0])  # Feeds the add: must stay.
    with pytest.warns(UserWarning, match=r"kept.*'outer'"):
        compacted = keras_anneal.compact(model)
    assert compacted.get_layer("inner").filters == 4
    assert compacted.get_layer("outer").kernel.shape == (3, 3, 4, 4)
    assert compacted.get_layer("outer").filters == 4 and compacted.get_layer("side").filters == 3
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(4, 8, 8, 4)))


def test_residual_dense_graph_compacts_what_feeds_one_consumer():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(6, activation="relu", name="first")(inputs)
    x = keras.layers.Dense(6, name="second")(x) + inputs
    model = keras_anneal.prune_model(keras.Model(inputs, keras.layers.Dense(2)(x)))
    set_dead(keras_anneal.masked_layers(model)[0], [0, 1])
    compacted = keras_anneal.compact(model)
    assert compacted.get_layer("first").units == 4
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(16, 6)))


def test_compacted_model_round_trips_through_keras_files(tmp_path):
    model = conv_model()
    set_dead(keras_anneal.masked_layers(model)[1], [0, 2])
    compacted = keras_anneal.compact(model)
    path = str(tmp_path / "compact.keras")
    compacted.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).normal(size=(4, 12, 12, 2))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), compacted.predict(x, verbose=0), atol=1e-6)


def test_unit_granularity_removes_exact_unit_counts_then_compacts():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(20, activation="relu", name="a"),
        keras.layers.Dense(10, activation="relu", name="b"),
        keras.layers.Dense(3, name="out"),
    ]))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 10)).astype("float32"), rng.normal(size=(64, 3)).astype("float32")
    schedule = schedules.FSA(0.5, end_fraction=0.5)
    snapshots = []

    def record(batch, logs):
        sync_backend_state(model)  # JAX: the variables the step will run with.
        snapshots.append([layer.get_masks()[0] for layer in keras_anneal.masked_layers(model)])

    recorder = keras.callbacks.LambdaCallback(on_train_batch_begin=record)
    pruning = keras_anneal.AnnealedPruning(schedule, frequency=2, granularity="unit")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[pruning, recorder])
    for step, masks in enumerate(snapshots):
        target = schedule(step - step % 2, 16)
        a, b, out = masks
        for mask in (a, b):
            dead = ~mask.any(axis=0)
            assert dead.sum() == int(np.floor(target * mask.shape[1] + 1e-9))
            assert np.all(mask[:, ~dead] == 1)  # Whole units only.
        assert np.all(out == 1)  # The outputs keep their units.
    a_layer = keras_anneal.masked_layers(model)[0]
    dead = ~a_layer.get_masks()[0].any(axis=0)
    assert dead.sum() == 10
    compacted = keras_anneal.compact(model)
    assert [layer.units for layer in compacted.layers] == [10, 5, 3]
    same_outputs(model, compacted, x)


def test_removed_units_biases_stay_at_zero_under_adam_so_compact_removes_every_one():
    # A dead filter's bias that drifts off zero (on its gradient, or on Adam's
    # stale moments) makes a constant channel, which `same` padding keeps.
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(8, 3, padding="same", activation="tanh"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ]))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 64)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0,
              callbacks=[keras_anneal.AnnealedPruning(0.5, frequency=2, granularity="unit")])
    for layer in keras_anneal.masked_layers(model)[:2]:
        dead = ~layer.get_masks()[0].reshape(-1, 8).any(axis=0)
        assert dead.sum() == 4
        bias = keras.ops.convert_to_numpy(layer.layer.bias)
        assert np.all(bias[dead] == 0) and np.all(bias[~dead] != 0)  # The live ones trained.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Nothing kept, nothing to report.
        compacted = keras_anneal.compact(model)
    assert [layer.filters for layer in compacted.layers[:2]] == [4, 4]
    same_outputs(model, compacted, x)


def test_unit_granularity_arguments_are_checked():
    with pytest.raises(ValueError, match=r"`granularity`.*granularity='filter'"):
        keras_anneal.AnnealedPruning(schedules.FSA(0.5), granularity="filter")
    with pytest.raises(ValueError, match=r"`granularity`.*allocation='uniform'.*allocation='erk'"):
        keras_anneal.AnnealedPruning(schedules.FSA(0.5), granularity="unit", allocation="erk")
    with pytest.raises(TypeError, match=r"`model` must be a keras.Model.*model=3"):
        keras_anneal.compact(3)


def test_dead_dimensions_of_an_embedding_go_with_the_inputs_that_read_them():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((5,), dtype="int32"), keras.layers.Embedding(10, 6, name="embedding"),
        keras.layers.Conv1D(4, 2, name="conv"), keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(2, name="out")]))
    mask = np.ones((10, 6), "float32")
    mask[:, [1, 4]] = 0.0  # Two dimensions no token uses.
    model.get_layer("masked_embedding").set_masks([mask])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Nothing kept, nothing to say.
        small = keras_anneal.compact(model)
    embedding = small.get_layer("embedding")
    assert (embedding.output_dim, embedding.embeddings.shape) == (4, (10, 4))
    assert small.get_layer("conv").kernel.shape == (2, 4, 4)
    tokens = np.random.default_rng(0).integers(0, 10, (4, 5)).astype("int32")
    same_on_tokens(model, small, tokens)


def test_dead_dimensions_of_an_embedding_go_through_flatten():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((4,), dtype="int32"), keras.layers.Embedding(10, 5, name="embedding"),
        keras.layers.Flatten(), keras.layers.Dense(3, name="out")]))
    mask = np.ones((10, 5), "float32")
    mask[:, [0, 3]] = 0.0
    model.get_layer("masked_embedding").set_masks([mask])
    small = keras_anneal.compact(model)
    assert small.get_layer("embedding").output_dim == 3
    assert small.get_layer("out").kernel.shape == (12, 3)  # 4 positions × 3 dimensions.
    tokens = np.random.default_rng(0).integers(0, 10, (6, 4)).astype("int32")
    same_on_tokens(model, small, tokens)


def test_an_embedding_of_unknown_length_and_mask_zero_is_compacted_through_pooling(tmp_path):
    """A text classifier as Keras' examples write it: sequences of any length,
    padding masked; the zero probe that checks the removed constants runs at
    a length of its own."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True, name="embedding")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(6, activation="relu", name="hidden")(x)
    model = keras_anneal.prune_model(keras.Model(inputs, keras.layers.Dense(2, name="out")(x)))
    mask = np.ones((20, 8), "float32")
    mask[:, :3] = 0.0
    model.get_layer("masked_embedding").set_masks([mask])
    small = keras_anneal.compact(model)
    assert small.get_layer("embedding").output_dim == 5
    assert small.get_layer("hidden").kernel.shape == (5, 6)
    tokens = np.array([[3, 7, 0, 0], [1, 2, 3, 4]], "int32")  # Padded with 0.
    expected = keras.ops.convert_to_numpy(model(tokens))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(small(tokens)), expected,
                               rtol=1e-5, atol=1e-6)
    small.save(tmp_path / "small.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.saving.load_model(tmp_path / "small.keras")(tokens)),
        expected, rtol=1e-5, atol=1e-6)


def test_unit_annealing_of_a_text_model_compacts_its_embedding_and_trains_on_alike():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6,), dtype="int32"), keras.layers.Embedding(30, 8, name="embedding"),
        keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(6, activation="relu", name="hidden"),
        keras.layers.Dense(2, name="out")]))
    rng = np.random.default_rng(0)
    tokens, y = rng.integers(0, 30, (32, 6)).astype("int32"), rng.normal(size=(32, 2)).astype("float32")
    # Momentum, not Adam: on TensorFlow a plain Embedding's gradient is sparse,
    # and Adam squares its rows before it sums repeated tokens, so Adam
    # trains a plain Embedding (the compacted one) apart from a masked one.
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    pruning = keras_anneal.AnnealedPruning(schedules.FSA(0.5, end_fraction=0.5), frequency=1,
                                           granularity="unit")
    model.fit(tokens, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[pruning])
    embedding = model.get_layer("masked_embedding").get_masks()[0]
    live = int(embedding.any(axis=0).sum())
    assert live == 4  # Half of the 8 dimensions, whole columns.
    small = keras_anneal.compact(model, carry_optimizer=True)
    assert small.get_layer("embedding").embeddings.shape == (30, live)
    assert small.get_layer("hidden").kernel.shape[0] == live
    for each in (model, small):
        each.fit(tokens, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(small.predict(tokens, verbose=0), model.predict(tokens, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_dead_dimensions_of_an_embedding_that_an_lstm_reads_are_kept_and_named():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((5,), dtype="int32"), keras.layers.Embedding(10, 6, name="embedding"),
        keras.layers.LSTM(3, name="lstm"), keras.layers.Dense(2, name="out")]))
    mask = np.ones((10, 6), "float32")
    mask[:, :2] = 0.0
    model.get_layer("masked_embedding").set_masks([mask])
    with pytest.warns(UserWarning, match=r"dead units of these layers were kept.*'embedding'"):
        small = keras_anneal.compact(model)
    assert small.get_layer("embedding").embeddings.shape == (10, 6)
    tokens = np.random.default_rng(0).integers(0, 10, (4, 5)).astype("int32")
    same_on_tokens(model, small, tokens)


def test_two_of_four_keeps_two_weights_in_every_block_of_four_inputs():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(6, name="a"), keras.layers.Dense(2, name="out")]))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 8)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")
    pruning = keras_anneal.AnnealedPruning(schedules.FSA(0.5, end_fraction=0.5), frequency=1,
                                           granularity="2:4")
    with pytest.warns(UserWarning, match=r"'2:4'\) leaves these weights unpruned.*"
                      r"\{'masked_out/kernel': \(6, 2\)\}"):
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[pruning])
    a = keras_anneal.masked_layers(model)[0].get_masks()[0]  # (8, 6): blocks of 4 inputs.
    assert np.all(a.reshape(2, 4, 6).sum(axis=1) == 2)
    out = keras_anneal.masked_layers(model)[1].get_masks()[0]  # (6, 2): 6 % 4 != 0, left.
    assert np.all(out == 1)
    assert history.history["sparsity"][-1] == pytest.approx(24 / 60)
    with pytest.raises(ValueError, match=r"`granularity`.*N:M.*granularity='4:2'"):
        keras_anneal.AnnealedPruning(schedules.FSA(0.5), granularity="4:2")


def test_constant_unit_is_kept_when_the_consumer_has_no_bias_to_fold_into():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(4, activation="sigmoid", name="a"),
        keras.layers.Dense(2, use_bias=False, name="out")]))
    set_dead(model.layers[0], [0])  # Outputs sigmoid(0) = 0.5: nowhere to fold it.
    with pytest.warns(UserWarning, match="kept.*masked_a|kept.*'a'"):
        compacted = keras_anneal.compact(model)
    assert compacted.layers[0].units == 4
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(16, 6)))


def test_per_channel_layers_after_flatten_are_not_compacted_wrongly():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, name="c"), keras.layers.Flatten(),
        keras.layers.BatchNormalization(), keras.layers.Dense(2, name="out")]))
    set_dead(model.layers[0], [1])
    with pytest.warns(UserWarning, match="kept"):
        compacted = keras_anneal.compact(model)
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(8, 6, 6, 2)))


def test_unit_granularity_keeps_the_units_of_a_layer_behind_a_softmax():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((10,)), keras.layers.Dense(12, activation="relu", name="a"),
        keras.layers.Dense(4, name="logits"), keras.layers.Activation("softmax")]))
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 10)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 4, 32), 4)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[keras_anneal.AnnealedPruning(
        schedules.ConstantSparsity(0.5), frequency=1, granularity="unit")])
    hidden, logits = (layer.get_masks()[0] for layer in keras_anneal.masked_layers(model))
    assert (~hidden.any(axis=0)).sum() == 6 and np.all(logits.any(axis=0))


def test_transposed_convolutions_keep_every_filter_connected_but_lose_no_filter():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((4, 4, 2)), keras.layers.Conv2DTranspose(5, 3, name="t")]))
    (layer,) = keras_anneal.masked_layers(model)  # Kernel (3, 3, 5 filters, 2 inputs).
    assert layer.unit_axes == [keras_anneal.masking.UNITS_BEFORE_LAST] and layer.unit_biases == [None]
    with warnings.catch_warnings():
        # The guard follows the filters: nothing to warn the user of.
        warnings.simplefilter("error", UserWarning)
        report = keras_anneal.prune(model, sparsity=0.95)  # 85 of 90 go: one weight per filter.
    assert report.pruned == 85
    assert layer.get_masks()[0].any(axis=(0, 1, 3)).all()
    before = layer.get_masks()[0].copy()
    with pytest.raises(ValueError, match="sparsity"):
        keras_anneal.prune(model, sparsity=0.99)  # 89 would leave some filter without a weight.
    np.testing.assert_array_equal(layer.get_masks()[0], before)
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 2))
    layer.set_masks([np.ones_like(before)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, model.predict(x, verbose=0), epochs=1, verbose=0, callbacks=[
        keras_anneal.AnnealedPruning(schedules.ConstantSparsity(0.95), frequency=1)])
    assert int((layer.get_masks()[0] == 0).sum()) == 85
    assert layer.get_masks()[0].any(axis=(0, 1, 3)).all()
    # Behind a Dense layer that loses units, it loses weights one by one, as the warning says.
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((4, 4, 2)), keras.layers.Dense(4, name="d"),
        keras.layers.Conv2DTranspose(5, 3, name="t"), keras.layers.Conv2D(2, 1, name="out")]))
    model.compile(optimizer="sgd", loss="mse")
    with pytest.warns(UserWarning, match=r"removes no whole units from \['masked_t'\]"):
        model.fit(x, model.predict(x, verbose=0), epochs=1, verbose=0, callbacks=[
            keras_anneal.AnnealedPruning(schedules.ConstantSparsity(0.5), granularity="unit")])
    dense, transposed = (layer.get_masks()[0] for layer in keras_anneal.masked_layers(model)[:2])
    assert (~dense.any(axis=0)).sum() == 2  # 2 of 4 units.
    assert int((transposed == 0).sum()) == (3 * 3 * 5 * 4) // 2
    assert transposed.any(axis=(0, 1, 3)).all()  # Every filter keeps a weight.


def test_unit_annealing_names_the_hidden_layers_whose_units_compact_keeps():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((8, 8, 2)), keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.DepthwiseConv2D(3, name="depthwise"), keras.layers.Reshape((4, 16)),
        keras.layers.TimeDistributed(keras.layers.Dense(6), name="per_row"),
        keras.layers.LSTM(3, name="lstm"), keras.layers.Dense(2, name="out")]))
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 8, 8, 2)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    pruning = keras_anneal.AnnealedPruning(schedules.FSA(0.5, end_fraction=0.5), frequency=1,
                                           granularity="unit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[pruning])
    said = [str(w.message) for w in caught if "does not delete them" in str(w.message)]
    assert len(said) == 1  # Once, naming those it does not narrow, not conv, per_row or out.
    assert ("{'masked_depthwise': 'DepthwiseConv2D', 'masked_lstm': 'LSTM'}. Their units, and "
            "those of the layers that feed them") in said[0]


def test_nested_sequential_models_are_opened_and_compacted():
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6, activation="relu", name="b")],
                             name="inner")
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((5,)), keras.layers.Dense(8, activation="relu", name="a"), inner,
        keras.layers.Dense(2, name="out")]))
    a, b, out = keras_anneal.masked_layers(model)
    set_dead(a, [1, 2])
    set_dead(b, [0])
    compacted = keras_anneal.compact(model)
    assert [layer.units for layer in compacted.layers] == [6, 5, 2]
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(16, 5)))


def test_residual_adds_remove_only_channels_dead_on_every_branch():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(6, 3, padding="same", name="stem")(inputs)
    a = keras.layers.Conv2D(6, 3, padding="same", name="a")(keras.layers.Activation("relu")(stem))
    x = keras.layers.Activation("relu")(stem + a)  # An operator residual.
    b = keras.layers.Conv2D(6, 1, name="b")(x)
    y = keras.layers.Add()([x, b])  # A layer residual: stem, a and b are coupled.
    outputs = keras.layers.Dense(2, name="out")(keras.layers.GlobalAveragePooling2D()(y))
    model = keras_anneal.prune_model(keras.Model(inputs, outputs))
    set_dead(model.get_layer("masked_stem"), [0, 1, 2])  # Zero biases: these output zeros.
    set_dead(model.get_layer("masked_a"), [0, 1])
    set_dead(model.get_layer("masked_b"), [0, 5])  # Only channel 0 is dead on every branch.
    with pytest.warns(UserWarning, match=r"kept.*'stem'.*'a'.*'b'"):
        compacted = keras_anneal.compact(model)
    assert [compacted.get_layer(name).filters for name in ("stem", "a", "b")] == [5, 5, 5]
    assert compacted.get_layer("a").kernel.shape == (3, 3, 5, 5)
    assert compacted.get_layer("out").kernel.shape == (5, 2)
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(4, 8, 8, 3)))


def test_constant_channels_of_an_add_are_folded_into_the_next_bias():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(4, activation="relu", bias_initializer="ones", name="h")(inputs)
    g = keras.layers.Dense(4, bias_initializer="ones", name="g")(inputs)
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Add()([h, g]))
    model = keras_anneal.prune_model(keras.Model(inputs, outputs))
    set_dead(model.get_layer("masked_h"), [1])
    set_dead(model.get_layer("masked_g"), [1])  # relu(1) + 1 = 2, whatever the input.
    compacted = keras_anneal.compact(model)
    assert compacted.get_layer("h").units == 3 and compacted.get_layer("g").units == 3
    out = model.get_layer("out").layer
    expected = keras.ops.convert_to_numpy(out.bias) + 2 * keras.ops.convert_to_numpy(out.kernel)[1]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(compacted.get_layer("out").bias),
                               expected, rtol=1e-6)
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(16, 5)))


def test_concatenation_maps_each_channel_to_its_branch(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(3, 3, name="a")(inputs)
    b = keras.layers.Conv2D(4, 3, name="b")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(keras.layers.Concatenate()([a, b]))
    c = keras.layers.Conv2D(2, 1, name="c")(x)
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Flatten()(c))
    model = keras_anneal.prune_model(keras.Model(inputs, outputs))
    bn = model.get_layer("bn")
    bn.set_weights([w + np.random.default_rng(1).uniform(0.1, 0.5, w.shape) for w in bn.get_weights()])
    set_dead(model.get_layer("masked_b"), [1, 3])  # Constants after BatchNormalization: folded.
    compacted = keras_anneal.compact(model)
    assert compacted.get_layer("a").filters == 3 and compacted.get_layer("b").filters == 2
    assert compacted.get_layer("bn").gamma.shape == (5,)
    assert compacted.get_layer("c").kernel.shape == (1, 1, 5, 2)
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 2))
    same_outputs(model, compacted, x)
    compacted.save(str(tmp_path / "concat.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "concat.keras"))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), compacted.predict(x, verbose=0), atol=1e-6)


def test_layers_it_does_not_know_keep_the_units_they_read():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    x = keras.layers.Dense(4, name="a")(inputs)
    x = keras.layers.LayerNormalization()(x)  # Mixes the units: a's units stay.
    shared = keras.layers.Dense(4, name="shared")
    outputs = keras.layers.Dense(2, name="out")(shared(shared(x)))  # Used twice: stays.
    model = keras_anneal.prune_model(keras.Model(inputs, outputs))
    set_dead(model.get_layer("masked_a"), [0])
    with pytest.warns(UserWarning, match=r"kept.*'a'"):
        compacted = keras_anneal.compact(model)
    assert compacted.get_layer("a").units == 4
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(8, 5)))


def test_an_output_behind_a_softmax_activation_is_not_reported_as_dead():
    """Keras' mixed-precision guide ends a model with a float32
    `Activation("softmax")`: the output layer's units feed it, not a Dense
    layer, and are not dead."""
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="a"),
        keras.layers.Dense(4, name="logits"), keras.layers.Activation("softmax", dtype="float32")]))
    set_dead(model.get_layer("masked_a"), [2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        compacted = keras_anneal.compact(model)
    assert compacted.get_layer("a").units == 7
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(8, 6)))


def test_a_unit_whose_rows_in_an_lstm_kernel_are_all_zero_is_reported_as_kept():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((5, 4)), keras.layers.Dense(6, activation="relu", name="a"),
        keras.layers.LSTM(3, name="lstm"), keras.layers.Dense(2, name="out")]))
    lstm = model.get_layer("masked_lstm")
    masks = lstm.get_masks()
    masks[0][2, :] = 0  # The input kernel's row of a's unit 2: the LSTM never reads it.
    lstm.set_masks(masks)
    with pytest.warns(UserWarning, match=r"kept.*'a'"):
        compacted = keras_anneal.compact(model)
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(8, 5, 4)))
    masks[0][2, :] = 1  # Read again: nothing is dead, nothing to say.
    lstm.set_masks(masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        keras_anneal.compact(model)


def test_a_wrapper_it_does_not_know_keeps_what_it_reads():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((5, 4, 6)), keras.layers.Dense(8, activation="relu", name="a"),
        keras.layers.TimeDistributed(keras.layers.Conv1DTranspose(4, 2), name="per_step"),
        keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling1D()),
        keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2, name="out")]))
    set_dead(model.get_layer("masked_a"), [0])
    with pytest.warns(UserWarning, match=r"kept.*'a'"):
        compacted = keras_anneal.compact(model)
    assert compacted.get_layer("a").units == 8
    x = np.random.default_rng(0).normal(size=(8, 5, 4, 6))
    same_outputs(model, compacted, x)
    # The wrapped layer's own dead units stay too, and the warning names the wrapper.
    set_dead(model.get_layer("masked_per_step"), [1], axis=-2)  # Kernel (2, out, in).
    with pytest.warns(UserWarning, match=r"kept.*'per_step'"):
        compacted = keras_anneal.compact(model)
    same_outputs(model, compacted, x)


def test_time_distributed_dense_and_convolution_lose_their_dead_units(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((3, 6, 6, 2)),
        keras.layers.TimeDistributed(keras.layers.Conv2D(6, 3, activation="relu"), name="conv"),
        keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D(), name="pool"),
        keras.layers.TimeDistributed(keras.layers.Dense(8, activation="relu"), name="step"),
        keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2, name="out")]))
    set_dead(model.get_layer("masked_conv"), [1, 4])
    set_dead(model.get_layer("masked_step"), [0, 5, 6])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        only_inputs = keras_anneal.compact(  # `step` makes the outputs: it keeps its 8 units.
            keras.Sequential([keras.Input((3, 6, 6, 2)), *model.layers[:3]]))
    assert tuple(only_inputs.get_layer("step").layer.kernel.shape) == (4, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        compacted = keras_anneal.compact(model)
    conv, step = compacted.get_layer("conv"), compacted.get_layer("step")
    assert (conv.layer.filters, tuple(conv.layer.kernel.shape)) == (4, (3, 3, 2, 4))
    assert (step.layer.units, tuple(step.layer.kernel.shape)) == (5, (4, 5))
    assert tuple(compacted.get_layer("out").kernel.shape) == (5, 2)
    x = np.random.default_rng(0).normal(size=(8, 3, 6, 6, 2))
    same_outputs(model, compacted, x)
    compacted.save(tmp_path / "small.keras")  # Its layers build anew from their configs.
    same_outputs(model, keras.saving.load_model(tmp_path / "small.keras"), x)


def test_a_layer_with_every_unit_dead_keeps_one():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((5,)), keras.layers.Dense(4, activation="relu", name="a"),
        keras.layers.Dense(2, name="out")]))
    set_dead(model.layers[0], [0, 1, 2, 3])  # Zero biases: the network outputs out's bias.
    with pytest.warns(UserWarning, match=r"last channel.*'a'"):
        compacted = keras_anneal.compact(model)
    assert compacted.layers[0].units == 1
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(8, 5)))


def test_units_behind_an_activation_that_mixes_them_stay():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((5,)), keras.layers.Dense(8, activation="sparsemax", name="a"),
        keras.layers.Dense(2, name="out")]))
    # Unit 3 of `a` is read by nothing, but sparsemax mixes it with the others.
    set_dead(model.layers[1], [3], axis=-2)
    with pytest.warns(UserWarning, match=r"kept.*'a'"):
        compacted = keras_anneal.compact(model)
    assert compacted.layers[0].units == 8
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(8, 5)))


def test_dead_units_of_layers_it_does_not_follow_are_reported():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6, 6, 2)), keras.layers.DepthwiseConv2D(3, name="depthwise"),
        keras.layers.Flatten(), keras.layers.Dense(2, name="out")]))
    set_dead(model.layers[0], [0], axis=-2)  # Input channel 0's filter.
    with pytest.warns(UserWarning, match=r"kept.*'depthwise'"):
        compacted = keras_anneal.compact(model)
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(4, 6, 6, 2)))


def test_nested_models_with_repeated_layer_names_stay_nested():
    keras.utils.set_random_seed(0)

    def block(name):
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="fc")], name=name)

    model = keras.Sequential([keras.Input((8,)), block("b1"), block("b2"),
                              keras.layers.Dense(2, name="out")])
    kernel = model.layers[0].layers[0].kernel
    kernel.assign(np.where(np.arange(8) == 0, 0.0, keras.ops.convert_to_numpy(kernel)))
    with pytest.warns(UserWarning, match=r"kept.*'fc'"):
        compacted = keras_anneal.compact(model)
    assert [layer.name for layer in compacted.layers] == ["b1", "b2", "out"]
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(8, 8)))


def test_a_constant_that_is_infinite_on_the_probe_is_not_folded():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 1, bias_initializer="ones", name="c")(1.0 / inputs)
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Flatten()(x))
    model = keras_anneal.prune_model(keras.Model(inputs, outputs))
    set_dead(model.get_layer("masked_c"), [0])  # 0 * (1 / 0) is NaN on an all-zero probe.
    with pytest.warns(UserWarning, match=r"kept.*'c'"):
        compacted = keras_anneal.compact(model)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(compacted.get_layer("out").bias)))
    same_outputs(model, compacted, np.random.default_rng(0).uniform(1, 2, size=(4, 4, 4, 2)))


def test_a_chain_of_dead_units_goes_whole():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((5,)), keras.layers.Dense(4, activation="relu", name="a"),
        keras.layers.Dense(3, activation="relu", name="b"), keras.layers.Dense(2, name="out")]))
    a, b, out = keras_anneal.masked_layers(model)
    mask = b.get_masks()[0]
    mask[0] = [0, 1, 0]  # a's unit 0 feeds only b's unit 1 ...
    b.set_masks([mask])
    set_dead(out, [1], axis=-2)  # ... which nothing reads: both go.
    compacted = keras_anneal.compact(model)
    assert [layer.units for layer in compacted.layers] == [3, 2, 2]
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(8, 5)))


def test_squeeze_and_excitation_channels_go_with_the_convolution():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    s = keras.layers.GlobalAveragePooling2D()(x)
    s = keras.layers.Dense(2, activation="relu", name="squeeze")(s)
    s = keras.layers.Dense(8, activation="sigmoid", name="excite")(s)
    x = keras.layers.Multiply()([x, keras.layers.Reshape((1, 1, 8))(s)])
    outputs = keras.layers.Dense(2, name="out")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras_anneal.prune_model(keras.Model(inputs, outputs))
    for name in ("out", "masked_squeeze"):  # Channel 3 is read by nothing.
        set_dead(model.get_layer(name), [3], axis=-2)
    compacted = keras_anneal.compact(model)
    assert compacted.get_layer("conv").filters == 7 and compacted.get_layer("excite").units == 7
    assert compacted.get_layer("squeeze").kernel.shape == (7, 2)
    same_outputs(model, compacted, np.random.default_rng(0).normal(size=(4, 6, 6, 4)))


def test_unit_granularity_removes_the_same_units_from_layers_an_add_couples():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    a = keras.layers.Dense(8, activation="relu", name="a")(inputs)
    b = keras.layers.Dense(8, name="b")(keras.layers.Dense(8, activation="relu", name="inner")(a))
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Activation("relu")(a + b))
    model = keras_anneal.prune_model(keras.Model(inputs, outputs))
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.normal(size=(64, 2)).astype("float32")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[keras_anneal.AnnealedPruning(
        schedules.FSA(0.5, end_fraction=0.5), frequency=1, granularity="unit")])

    def dead(name):
        return set(np.flatnonzero(~model.get_layer(name).get_masks()[0].any(axis=0)))

    assert len(dead("masked_a")) == 4 and dead("masked_a") == dead("masked_b")
    assert len(dead("masked_inner")) == 4  # Not coupled: its own choice, same count.
    compacted = keras_anneal.compact(model)
    assert [compacted.get_layer(n).units for n in ("a", "inner", "b")] == [4, 4, 4]
    same_outputs(model, compacted, x)
