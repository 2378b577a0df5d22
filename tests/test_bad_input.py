"""Bad input across the public API: the right exception, a message naming the
argument and the value received, and a model left exactly as it was."""

import re

import keras
import numpy as np
import pytest

import keras_anneal
from keras_anneal import criteria
from keras_anneal import schedules

L = keras.layers


def pruned_mlp():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(
        keras.Sequential([keras.Input((6,)), L.Dense(5, name="hidden"), L.Dense(2, name="out")])
    )
    for layer in keras_anneal.masked_layers(model):
        layer.set_masks([np.random.default_rng(0).random(w.shape) > 0.3 for w in layer.prunable_weights])
    return model


def snapshot(model):
    return [keras.ops.convert_to_numpy(w).copy() for w in model.weights] + [
        [type(layer).__name__ for layer in model.layers]
    ]


def fit_with(model, callback):
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 6), "float32")
    model.fit(x, np.ones((8, 2), "float32"), epochs=1, verbose=0, callbacks=[callback])


def dense_model():
    return keras.Sequential([keras.Input((3,)), L.Dropout(0.1)])


def nested_model():
    inner = keras.Sequential([keras.Input((6,)), L.Dense(4)], name="inner")
    inputs = keras.Input((6,))
    return keras.Model(inputs, L.Dense(2)(inner(inputs)))


def named_dense():
    return keras.Sequential([keras.Input((6,)), L.Dense(2, name="d")])


def unbuilt():
    return keras.Sequential([L.Dense(2)])


class NotALayer:
    pass


# (id, call on the pruned model, exception, argument named, value received as shown)
CASES = [
    ("masked-not-a-layer", lambda m: keras_anneal.Masked("dense"), TypeError, "layer", "'dense'"),
    ("masked-twice", lambda m: keras_anneal.Masked(m.layers[0]), ValueError, "layer", "Masked(name='masked_hidden')"),
    ("masked-no-weights", lambda m: keras_anneal.Masked(L.Dropout(0.5)), ValueError, "layer", "Dropout(name="),
    ("masked-groups-without-noise", lambda m: keras_anneal.Masked(L.Dense(2), drop_connect_groups=3), ValueError, "drop_connect_groups", "drop_connect_groups=3"),
    ("prune-model-groups", lambda m: keras_anneal.prune_model(m, drop_connect=0.2, drop_connect_groups=0), ValueError, "drop_connect_groups", "drop_connect_groups=0"),
    ("prune-model-groups-without-noise", lambda m: keras_anneal.prune_model(m, drop_connect_groups=2), ValueError, "drop_connect_groups", "drop_connect_groups=2"),
    ("masked-noise-unknown", lambda m: keras_anneal.Masked(L.Dense(2), drop_connect=0.2, drop_connect_noise="normal"), ValueError, "drop_connect_noise", "drop_connect_noise='normal'"),
    ("masked-gaussian-unsupported-layer", lambda m: keras_anneal.Masked(L.Conv2DTranspose(2, 3), drop_connect=0.2, drop_connect_noise="gaussian"), ValueError, "drop_connect_noise", "layer=Conv2DTranspose"),
    ("prune-model-noise-unknown", lambda m: keras_anneal.prune_model(m, drop_connect=0.2, drop_connect_noise="Gaussian"), ValueError, "drop_connect_noise", "drop_connect_noise='Gaussian'"),
    ("prune-model-groups-zero-rates", lambda m: keras_anneal.prune_model(named_dense(), drop_connect={"d": 0.0}, drop_connect_groups=2), ValueError, "drop_connect_groups", "drop_connect={'d': 0.0}"),
    ("set-masks-count", lambda m: m.layers[0].set_masks([]), ValueError, "masks", "0 arrays"),
    ("set-masks-shape", lambda m: m.layers[0].set_masks([np.ones((2, 2))]), ValueError, "masks", "shape=(2, 2)"),
    ("set-masks-values", lambda m: m.layers[0].set_masks([np.full((6, 5), 0.5)]), ValueError, "masks", "[0.5]"),
    ("prune-model-type", lambda m: keras_anneal.prune_model("model"), TypeError, "model", "'model'"),
    ("prune-model-unbuilt", lambda m: keras_anneal.prune_model(unbuilt()), ValueError, "model", "not built"),
    ("prune-model-nothing", lambda m: keras_anneal.prune_model(dense_model()), ValueError, "model", "'Dropout']"),
    ("prune-layers-unknown", lambda m: keras_anneal.prune_model(m, layers=["hiden"]), ValueError, "layers", "['hiden']"),
    ("prune-layers-type", lambda m: keras_anneal.prune_model(m, layers=[3]), TypeError, "layers", "3 of type int"),
    ("prune-layers-container", lambda m: keras_anneal.prune_model(m, layers=3.5), TypeError, "layers", "layers=3.5"),
    ("prune-layers-class", lambda m: keras_anneal.prune_model(m, layers=[L.Conv2D]), ValueError, "layers", "['Conv2D']"),
    ("prune-layers-empty", lambda m: keras_anneal.prune_model(m, layers=[]), ValueError, "layers", "layers=[]"),
    ("prune-layers-unreachable", lambda m: keras_anneal.prune_model(nested_model(), layers=["inner"]), ValueError, "layers", "['inner']"),
    ("dropout-scaling-pairs-kinds", lambda m: fit_with(m, keras_anneal.DropoutScaling(pairs={"masked_hidden": "masked_out"})), ValueError, "pairs", "masked_hidden: masked_out"),
    ("prune-inplace", lambda m: keras_anneal.prune_model(m, inplace="yes"), TypeError, "inplace", "inplace='yes'"),
    ("strip-type", lambda m: keras_anneal.strip(42), TypeError, "model", "model=42"),
    ("strip-inplace", lambda m: keras_anneal.strip(m, inplace=1), TypeError, "inplace", "inplace=1"),
    ("report-type", lambda m: keras_anneal.sparsity_report([1]), TypeError, "model", "[1]"),
    ("callback-schedule", lambda m: keras_anneal.AnnealedPruning("fsa"), TypeError, "schedule", "'fsa'"),
    ("callback-schedule-number", lambda m: keras_anneal.AnnealedPruning(1.5), ValueError, "schedule", "schedule=1.5"),
    ("callback-schedule-bool", lambda m: keras_anneal.AnnealedPruning(True), TypeError, "schedule", "schedule=True"),
    ("callback-frequency-zero", lambda m: keras_anneal.AnnealedPruning(schedules.FSA(0.5), frequency=0), ValueError, "frequency", "frequency=0"),
    ("callback-frequency-type", lambda m: keras_anneal.AnnealedPruning(schedules.FSA(0.5), frequency=2.5), TypeError, "frequency", "frequency=2.5"),
    ("callback-scope", lambda m: keras_anneal.AnnealedPruning(schedules.FSA(0.5), scope="model"), ValueError, "scope", "scope='model'"),
    ("callback-criterion", lambda m: keras_anneal.AnnealedPruning(schedules.FSA(0.5), criterion="smallest"), ValueError, "criterion", "criterion='smallest'"),
    ("callback-temporary", lambda m: keras_anneal.AnnealedPruning(schedules.FSA(0.5), temporary=0.1), TypeError, "temporary", "temporary=0.1"),
    ("callback-regrowth", lambda m: keras_anneal.AnnealedPruning(schedules.FSA(0.5), regrowth="set"), TypeError, "regrowth", "regrowth='set'"),
    ("callback-on-nonfinite", lambda m: keras_anneal.AnnealedPruning(schedules.FSA(0.5), on_nonfinite="ignore"), ValueError, "on_nonfinite", "on_nonfinite='ignore'"),
    ("fsa-sparsity-range", lambda m: schedules.FSA(final_sparsity=1.2), ValueError, "final_sparsity", "final_sparsity=1.2"),
    ("fsa-sparsity-type", lambda m: schedules.FSA(final_sparsity="0.9"), TypeError, "final_sparsity", "final_sparsity='0.9'"),
    ("fsa-mu", lambda m: schedules.FSA(0.9, mu=-1), ValueError, "mu", "mu=-1"),
    ("fsa-end-fraction", lambda m: schedules.FSA(0.9, end_fraction=0.0), ValueError, "end_fraction", "end_fraction=0.0"),
    ("constant-sparsity", lambda m: schedules.ConstantSparsity(-0.1), ValueError, "target_sparsity", "target_sparsity=-0.1"),
    ("constant-rate", lambda m: schedules.ConstantRate(rate=1.5), ValueError, "rate", "rate=1.5"),
    ("polynomial-power", lambda m: schedules.PolynomialDecay(final_sparsity=0.9, power=0, end_fraction=0.5), ValueError, "power", "power=0"),
    ("temporary-fraction", lambda m: keras_anneal.TemporaryRemoval(fraction=1.0), ValueError, "fraction", "fraction=1.0"),
    ("temporary-duration", lambda m: keras_anneal.TemporaryRemoval(duration=0), ValueError, "duration", "duration=0"),
    ("temporary-criterion", lambda m: keras_anneal.TemporaryRemoval(criterion="noisy"), ValueError, "criterion", "criterion='noisy'"),
    ("regrowth-fraction", lambda m: keras_anneal.Regrowth(fraction=0), ValueError, "fraction", "fraction=0"),
    ("regrowth-end", lambda m: keras_anneal.Regrowth(end_fraction=1.5), ValueError, "end_fraction", "end_fraction=1.5"),
    ("regrowth-grow", lambda m: keras_anneal.Regrowth(grow="rigl"), ValueError, "grow", "grow='rigl'"),
    ("regrowth-gradient-without-data", lambda m: keras_anneal.AnnealedPruning(schedules.FSA(0.5), regrowth=keras_anneal.Regrowth(grow="gradient")), ValueError, "regrowth_data", "regrowth_data=None"),
    ("regrowth-data-unused", lambda m: keras_anneal.AnnealedPruning(schedules.FSA(0.5), regrowth_data=(np.ones((4, 8)), np.ones((4, 1)))), ValueError, "regrowth_data", "regrowth_data given"),
    ("regrowth-data-lengths", lambda m: keras_anneal.AnnealedPruning(schedules.FSA(0.5), regrowth=keras_anneal.Regrowth(grow="gradient"), regrowth_data=(np.ones((4, 8)), np.ones((3, 1)))), ValueError, "regrowth_data", "lengths [3, 4]"),
    ("random-seed", lambda m: criteria.Random(seed=-1), ValueError, "seed", "seed=-1"),
    ("criteria-get", lambda m: criteria.get("smallest"), ValueError, "criterion", "criterion='smallest'"),
    ("criteria-get-type", lambda m: criteria.get(3), TypeError, "criterion", "criterion=3 of type int"),
    ("prune-sparsity-as-criterion", lambda m: keras_anneal.prune(m, 0.5), TypeError, "criterion", "prune(model, sparsity=0.5)"),
    ("criterion-sparsity", lambda m: criteria.Magnitude().masks([np.ones(3)], [np.ones(3)], 1.0), ValueError, "sparsity", "sparsity=1.0"),
    ("register-class", lambda m: keras_anneal.register_prunable_layer(NotALayer, ["kernel"]), TypeError, "cls", "NotALayer"),
    ("register-weights", lambda m: keras_anneal.register_prunable_layer(L.Dense, "kernel"), TypeError, "weights", "weights='kernel'"),
    ("dropout-scaling-pairs", lambda m: keras_anneal.DropoutScaling(pairs=["dropout"]), TypeError, "pairs", "pairs=['dropout']"),
    ("dropout-scaling-no-dropout", lambda m: fit_with(m, keras_anneal.DropoutScaling()), ValueError, "pairs", "pairs=None"),
    ("budget-monitor-empty", lambda m: keras_anneal.AnnealedPruning(0.9, monitor=""), ValueError, "monitor", "monitor=''"),
    ("dropout-scaling-frequency", lambda m: keras_anneal.DropoutScaling(frequency=-1), ValueError, "frequency", "frequency=-1"),
    ("fsa-mu-nan", lambda m: schedules.FSA(0.9, mu=float("nan")), ValueError, "mu", "mu=nan"),
    ("budget-max-drop-nan", lambda m: keras_anneal.AnnealedPruning(0.9, max_drop=float("nan")), ValueError, "max_drop", "max_drop=nan"),
    ("obs-damping-inf", lambda m: criteria.LayerwiseOBS(damping=float("inf")), ValueError, "damping", "damping=inf"),
    ("callback-keep-units-string", lambda m: keras_anneal.AnnealedPruning(0.9, keep_units_connected="False"), TypeError, "keep_units_connected", "'False'"),
    ("callback-restore-weights", lambda m: keras_anneal.AnnealedPruning(0.9, restore_weights=0), TypeError, "restore_weights", "restore_weights=0"),
    ("compact-carry-optimizer", lambda m: keras_anneal.compact(m, carry_optimizer="no"), TypeError, "carry_optimizer", "'no'"),
    ("one-shot-scope-and-allocation", lambda m: keras_anneal.prune(m, sparsity=0.5, allocation="lamp", scope="global"), ValueError, "scope", "allocation='lamp', scope='global'"),
    ("one-shot-keep-units", lambda m: keras_anneal.prune(m, sparsity=0.5, keep_units_connected=None), TypeError, "keep_units_connected", "None"),
    ("one-shot-batch-size", lambda m: keras_anneal.prune(m, sparsity=0.5, batch_size=0), ValueError, "batch_size", "batch_size=0"),
    ("masks-from-scores-scope", lambda m: keras_anneal.masking.masks_from_scores([np.ones(4)], [np.ones(4)], 0.5, scope="Global"), ValueError, "scope", "scope='Global'"),
    ("search-iterations", lambda m: keras_anneal.search.SimulatedAnnealing(iterations=0), ValueError, "iterations", "iterations=0"),
    ("search-uncompiled", lambda m: keras_anneal.search.simulated_annealing(m, np.ones((4, 6)), np.ones((4, 2)), verbose=0), ValueError, "model", "compile"),
    ("search-layers", lambda m: (m.compile(loss="mse"), keras_anneal.search.simulated_annealing(m, np.ones((4, 6)), np.ones((4, 2)), layers=["nope"], verbose=0)), ValueError, "layers", "'nope'"),
    ("search-no-targets", lambda m: (m.compile(loss="mse"), keras_anneal.search.simulated_annealing(m, np.ones((4, 6)), verbose=0)), ValueError, "y", "y=None"),
    ("scan-no-targets", lambda m: (m.compile(loss="mse"), keras_anneal.sensitivity_scan(m, np.ones((4, 6)))), ValueError, "y", "y=None"),
    ("budget-without-max-drop", lambda m: keras_anneal.AnnealedPruning(0.9, reference=0.98), ValueError, "max_drop", "reference=0.98, max_drop=None"),
    ("search-nan-inputs", lambda m: (m.compile(loss="mse"), keras_anneal.search.simulated_annealing(m, np.full((4, 6), np.nan, "float32"), np.ones((4, 2)), verbose=0)), ValueError, "x", "x with 24 non-finite values"),
    ("scan-nan-inputs", lambda m: (m.compile(loss="mse"), keras_anneal.sensitivity_scan(m, np.full((4, 6), np.inf, "float32"), np.ones((4, 2)))), ValueError, "x", "x with 24 non-finite values"),
    ("scan-empty", lambda m: (m.compile(loss="mse"), keras_anneal.sensitivity_scan(m, np.ones((0, 6)), np.ones((0, 2)))), ValueError, "x", "0 samples"),
    ("search-lengths", lambda m: (m.compile(loss="mse"), keras_anneal.search.simulated_annealing(m, np.ones((4, 6)), np.ones((3, 2)), verbose=0)), ValueError, "x", "4 inputs and 3 targets"),
    ("allocation-dict-value", lambda m: keras_anneal.AnnealedPruning(0.9, allocation={"masked_hidden": "x"}), TypeError, "allocation['masked_hidden']", "allocation['masked_hidden']='x'"),
    ("scan-repeated-sparsity", lambda m: (m.compile(loss="mse"), keras_anneal.sensitivity_scan(m, np.ones((4, 6)), np.ones((4, 2)), sparsities=(0.5, 0.5))), ValueError, "sparsities", "sparsities=[0.5, 0.5]"),
    ("one-shot-empty-data", lambda m: keras_anneal.prune(m, "obs", sparsity=0.5, data=np.ones((0, 6), "float32")), ValueError, "data", "0 samples"),
]


def test_the_87_kinds_of_bad_input_the_readme_counts():
    assert len({case[0] for case in CASES}) >= 87


@pytest.mark.parametrize("call, error, argument, received", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_is_named_and_leaves_the_model_alone(call, error, argument, received):
    model = pruned_mlp()
    before = snapshot(model)
    with pytest.raises(error) as info:
        call(model)
    message = str(info.value)
    assert f"`{argument}`" in message, message
    assert received in message, message
    after = snapshot(model)
    assert after[-1] == before[-1]
    for old, new in zip(before[:-1], after[:-1]):
        np.testing.assert_array_equal(old, new)


def test_non_finite_weights_stop_pruning_with_the_layer_named():
    model = pruned_mlp()
    hidden = model.layers[0]
    kernel = keras.ops.convert_to_numpy(hidden.layer.kernel).copy()
    kernel[0, 0] = np.nan
    hidden.layer.kernel.assign(kernel)
    masks = hidden.get_masks()
    pruning = keras_anneal.AnnealedPruning(
        schedules.ConstantSparsity(0.9), frequency=1, keep_units_connected=False
    )
    with pytest.raises(FloatingPointError, match=r"masked_hidden/kernel.*1 non-finite.*on_nonfinite='skip'"):
        fit_with(model, pruning)
    for old, new in zip(masks, hidden.get_masks()):
        np.testing.assert_array_equal(old, new)  # Masks never computed from NaN.


def test_non_finite_weights_can_skip_the_update_with_a_warning():
    model = pruned_mlp()
    hidden = model.layers[0]
    hidden.layer.kernel.assign(np.full((6, 5), np.inf, "float32"))
    masks = hidden.get_masks()
    pruning = keras_anneal.AnnealedPruning(
        schedules.ConstantSparsity(0.9), frequency=1, on_nonfinite="skip",
        keep_units_connected=False,
    )
    with pytest.warns(RuntimeWarning, match="update is skipped"):
        fit_with(model, pruning)
    pruned = masks[0].size - np.count_nonzero(hidden.get_masks()[0])
    assert pruned == masks[0].size - np.count_nonzero(masks[0])  # Not 100%.


def test_masks_are_never_computed_from_nan_scores():
    with pytest.raises(ValueError, match="non-finite"):
        keras_anneal.masking.magnitude_masks([np.array([1.0, np.nan, 2.0])], [np.ones(3)], 0.5)


def test_a_search_refuses_a_nan_baseline_and_leaves_the_masks():
    model = pruned_mlp()
    model.compile(loss="mse")
    masks = [layer.get_masks() for layer in keras_anneal.masked_layers(model)]
    y = np.full((4, 2), np.nan, "float32")  # Finite inputs (those are checked apart).
    with pytest.raises(FloatingPointError, match=re.escape("calibration loss=nan")):
        keras_anneal.search.simulated_annealing(model, np.ones((4, 6)), y, verbose=0)
    for layer, old in zip(keras_anneal.masked_layers(model), masks):
        for a, b in zip(old, layer.get_masks()):
            np.testing.assert_array_equal(a, b)


def test_a_non_finite_loss_stops_pruning_at_the_epoch_end():
    model = pruned_mlp()
    masks = [layer.get_masks() for layer in keras_anneal.masked_layers(model)]
    pruning = keras_anneal.AnnealedPruning(schedules.ConstantSparsity(0.5), frequency=1000)
    pruning.set_model(model)
    pruning.params = {"steps": 1, "epochs": 1}
    model.compile(optimizer="sgd", loss="mse")
    pruning.on_train_begin()
    with pytest.raises(FloatingPointError, match="training loss is nan"):
        pruning.on_epoch_end(0, {"loss": float("nan")})
    for layer, old in zip(keras_anneal.masked_layers(model), masks):
        for a, b in zip(old, layer.get_masks()):
            np.testing.assert_array_equal(a, b)
