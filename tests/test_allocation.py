"""Issue 14: sparsity allocation, the unit guard, the accuracy budget, the
sensitivity scan and per-layer sparsity in the logs and TensorBoard."""

import glob
import math

import keras
import numpy as np
import pytest
from conftest import regression_data
from conftest import small_mlp

import keras_anneal
from keras_anneal import allocation
from keras_anneal import schedules
from keras_anneal.callbacks import AnnealedPruning

ALLOCATIONS = ["uniform", "global", "erk", "lamp", {"masked_hidden": 0.9}, {"masked_out": 0.75}]


def all_masks(model):
    return [mask for layer in keras_anneal.masked_layers(model) for mask in layer.get_masks()]


def compiled(model, learning_rate=0.05, **kwargs):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse", **kwargs)
    return model


class MaskRecorder(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.snapshots = []

    def on_train_batch_begin(self, batch, logs=None):
        self.snapshots.append(all_masks(self.model))


def pruned_counts(masks):
    return [int(m.size - np.count_nonzero(m)) for m in masks]


@pytest.mark.parametrize("choice", ALLOCATIONS + ["callable"], ids=str)
def test_each_allocation_prunes_exactly_the_scheduled_overall_count(choice):
    keras.utils.set_random_seed(0)
    if choice == "callable":
        choice = lambda sparsity, sizes: {"masked_hidden": sparsity * 1.05}  # noqa: E731
    model = compiled(keras_anneal.prune_model(small_mlp(hidden=32)))
    x, y = regression_data()
    schedule = schedules.FSA(final_sparsity=0.8, mu=2.0, end_fraction=0.75)
    recorder = MaskRecorder()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
              callbacks=[AnnealedPruning(schedule, frequency=3, allocation=choice), recorder])
    total_steps = 3 * 8
    for step, masks in enumerate(recorder.snapshots):
        target = schedule(step - step % 3, total_steps)
        pruned, total = keras_anneal.masking.count_pruned(masks)
        assert pruned == math.floor(target * total + 1e-9)
        for mask in masks:  # Every output unit keeps an incoming weight.
            assert np.all(mask.reshape(-1, mask.shape[-1]).sum(axis=0) >= 1)
    for earlier, later in zip(recorder.snapshots, recorder.snapshots[1:]):
        for before, after in zip(earlier, later):
            assert np.all(after[before == 0] == 0)  # Cumulative.


def test_per_layer_dict_pins_its_layers_and_the_rest_absorbs():
    model = keras_anneal.prune_model(small_mlp(hidden=32))
    keras_anneal.prune(model, sparsity=0.5, allocation={"masked_out": None})
    hidden, out = keras_anneal.sparsity_report(model).layers
    assert (hidden.pruned, out.pruned) == (math.floor(0.5 * (256 + 128)), 0)
    model = keras_anneal.prune_model(small_mlp(hidden=32))
    keras_anneal.prune(model, sparsity=0.5, allocation={"masked_out": 0.25})
    hidden, out = keras_anneal.sparsity_report(model).layers
    assert (hidden.pruned, out.pruned) == (192 - 32, 32)


def erk_model():
    return keras_anneal.prune_model(small_mlp(inputs=8, hidden=16, outputs=4))


@pytest.mark.parametrize(
    "sparsity, expected",
    [
        # N = 128 + 64; kept k_i = lam * sum(shape_i) = lam * (24, 20).
        # s = 0.5: 96 kept, lam = 96 / 44: k = (52.36, 43.64) -> (52, 44).
        (0.5, [76, 20]),
        # s = 0.2: 154 kept, lam = 3.5: k_out = 70 > 64, so out stays dense
        # and hidden keeps the other 90.
        (0.2, [38, 0]),
    ],
)
def test_erk_densities_equal_a_hand_computation(sparsity, expected):
    model = erk_model()
    keras_anneal.prune(model, sparsity=sparsity, allocation="erk")
    assert pruned_counts(all_masks(model)) == expected


def test_lamp_scores_equal_the_formula():
    w = np.array([[0.5, -2.0], [1.0, -1.0]])
    # Sorted by magnitude: 0.5, 1.0 (index 2), -1.0 (index 3), -2.0.
    squares = [0.25, 1.0, 1.0, 4.0]
    expected_sorted = [squares[i] / sum(squares[i:]) for i in range(4)]
    expected = np.array([[expected_sorted[0], expected_sorted[3]],
                         [expected_sorted[1], expected_sorted[2]]])
    np.testing.assert_allclose(allocation.lamp_scores(w), expected)
    # Pruned weights count as zeros.
    masked = allocation.lamp_scores(w, mask=np.array([[0, 1], [1, 1]]))
    assert masked[0, 0] == 0.0 and masked[0, 1] == 1.0


def test_lamp_with_magnitude_is_a_global_ranking_of_lamp_scores():
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=(12, 6)), 3 * rng.normal(size=(6, 3))]
    masks = keras_anneal.criteria.Magnitude().masks(
        weights, [np.ones_like(w) for w in weights], 0.6, "lamp", keep_units_connected=False
    )
    scores = np.concatenate([allocation.lamp_scores(w).ravel() for w in weights])
    kept = np.concatenate([m.ravel() for m in masks]) == 1
    assert kept.sum() == 90 - math.floor(0.6 * 90)
    assert scores[kept].min() >= scores[~kept].max()


@pytest.mark.parametrize("choice", ["uniform", "global", "erk", "lamp"])
def test_unit_guard_holds_at_99_percent(choice):
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((300,)), keras.layers.Dense(20, name="wide"), keras.layers.Dense(10, name="out"),
    ]))
    report = keras_anneal.prune(model, sparsity=0.99, allocation=choice)
    assert report.pruned == math.floor(0.99 * 6200)
    for mask in all_masks(model):
        assert np.all(mask.sum(axis=0) >= 1)


def test_without_the_guard_units_are_disconnected():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((300,)), keras.layers.Dense(20, name="wide"), keras.layers.Dense(10, name="out"),
    ]))
    keras_anneal.prune(model, sparsity=0.99, keep_units_connected=False)
    assert any(np.any(mask.sum(axis=0) == 0) for mask in all_masks(model))


def test_unit_guard_counts_depthwise_channels():
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
        keras.layers.Conv2D(4, 3),
    ]))
    assert keras_anneal.masked_layers(model)[0].unit_axes == [1 + 1]
    keras_anneal.prune(model, sparsity=0.8, allocation="global")
    depthwise = all_masks(model)[0]  # (3, 3, 3, 2): 6 output channels.
    assert np.all(depthwise.sum(axis=(0, 1)) >= 1)


def test_guard_that_cannot_be_kept_is_refused_before_training():
    model = compiled(keras_anneal.prune_model(small_mlp()))
    x, y = regression_data()
    with pytest.raises(ValueError, match="keep every output unit connected.*keep_units_connected=False"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[AnnealedPruning(schedules.ConstantSparsity(0.95), frequency=1)])
    assert all(np.all(mask == 1) for mask in all_masks(model))


@pytest.mark.parametrize("choice", ["uniform", "global", "erk", "lamp", {"masked_out": 0.3}])
def test_allocation_configs_round_trip(choice):
    original = allocation.get(choice)
    config = keras.saving.serialize_keras_object(original)
    assert allocation.get(config) == original
    callback = AnnealedPruning(schedules.FSA(0.5), allocation=config)
    assert callback.allocation == original


def test_scope_still_selects_uniform_or_global():
    assert AnnealedPruning(schedules.FSA(0.5), scope="global").allocation == allocation.Global()
    assert AnnealedPruning(schedules.FSA(0.5), scope="layer").allocation == allocation.Uniform()
    with pytest.raises(ValueError, match="either `allocation` or.*`scope`.*allocation='erk'"):
        AnnealedPruning(schedules.FSA(0.5), allocation="erk", scope="global")


@pytest.mark.parametrize(
    "choice, error, pattern",
    [
        ({"masked_nope": 0.5}, ValueError, r"`allocation`.*\['masked_nope'\].*masked_hidden"),
        # Pinned: hidden 0.95 of 128 = 121 > 0.5 of 192 = 96.
        ({"masked_hidden": 0.95}, ValueError, r"`allocation`.*unreachable.*pins 121"),
        # Everything named, but 0.1 and 0.1 cannot make 0.5 overall.
        ({"masked_hidden": 0.1, "masked_out": 0.1}, ValueError, r"unreachable"),
    ],
)
def test_bad_allocation_at_fit_raises_with_the_model_unchanged(choice, error, pattern):
    model = compiled(keras_anneal.prune_model(small_mlp()))
    before = [w.copy() for w in model.get_weights()]
    x, y = regression_data()
    callback = AnnealedPruning(schedules.ConstantSparsity(0.5), frequency=1, allocation=choice)
    with pytest.raises(error, match=pattern):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize(
    "choice, error, pattern",
    [
        ({"masked_hidden": 1.0}, ValueError, r"`allocation\['masked_hidden'\]`.*\[0, 1\).*1.0"),
        ({"masked_hidden": -0.1}, ValueError, r"`allocation\['masked_hidden'\]`.*-0.1"),
        ("best", ValueError, r"`allocation`.*'erk'.*allocation='best'"),
        (3, ValueError, r"`allocation`.*allocation=3"),
    ],
)
def test_bad_allocation_arguments_are_named(choice, error, pattern):
    with pytest.raises(error, match=pattern):
        AnnealedPruning(schedules.FSA(0.5), allocation=choice)
    model = keras_anneal.prune_model(small_mlp())
    with pytest.raises(error, match=pattern):
        keras_anneal.prune(model, sparsity=0.5, allocation=choice)
    assert all(np.all(mask == 1) for mask in all_masks(model))


class StepSchedule(schedules.PruningSchedule):
    """0 in epoch 0, 0.4 in epoch 1, 0.95 from epoch 2 on (4 steps an epoch)."""

    final_sparsity = 0.95

    def __call__(self, step, total_steps=None):
        return 0.0 if step < 4 else 0.4 if step < 8 else 0.95

    def get_config(self):
        return {}


def budget_problem():
    """A teacher-labelled classification: any pruning costs accuracy, a lot at 95%."""
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(5, name="dense")]))
    x = np.random.default_rng(0).normal(size=(32, 20)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    # Learning rate 0: the accuracy is a function of the masks alone.
    model.compile(optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, x, y


def test_budget_restores_the_last_masks_within_it():
    model, x, y = budget_problem()
    masks_at_epoch_end = []
    # Placed first: it sees the masks the validation metric was measured with.
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: masks_at_epoch_end.append(all_masks(model)))
    pruning = AnnealedPruning(StepSchedule(), frequency=1, max_drop=0.3, reference=1.0)
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0, validation_data=(x, y),
                        callbacks=[record, pruning])
    accuracy = history.history["val_accuracy"]
    assert accuracy[0] == 1.0 and 0.7 <= accuracy[1] < 1.0 and accuracy[2] < 0.7
    stop = pruning.budget_stop
    assert (stop.epoch, stop.restored_epoch) == (2, 1)
    assert stop.sparsity == pytest.approx(0.4)
    assert "beyond the budget of 0.3" in str(stop) and "end of epoch 2 are back" in str(stop)
    for held in (masks_at_epoch_end[3], all_masks(model)):  # Epoch 1's, to the end.
        for kept, mask in zip(masks_at_epoch_end[1], held):
            np.testing.assert_array_equal(kept, mask)
    assert accuracy[3] == accuracy[1]
    # Logged as validated: each epoch's `val_accuracy` was measured at this sparsity.
    assert history.history["sparsity"] == pytest.approx([0.0, 0.4, 0.95, 0.4])
    assert history.history["sparsity"][stop.restored_epoch] == pytest.approx(stop.sparsity)
    assert history.history["sparsity_held"] == [0.0, 0.0, 1.0, 1.0]


def test_budget_against_the_best_value_so_far():
    model, x, y = budget_problem()
    pruning = AnnealedPruning(StepSchedule(), frequency=1, max_drop=0.0)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_data=(x, y),
              callbacks=[pruning])
    # Any pruning costs accuracy here: the masks fit started with come back.
    assert pruning.budget_stop.epoch == 1 and pruning.budget_stop.restored_epoch == 0
    assert keras_anneal.sparsity_report(model).sparsity == 0.0


def test_budget_without_the_metric_in_the_logs_puts_the_masks_back():
    model, x, y = budget_problem()
    pruning = AnnealedPruning(StepSchedule(), frequency=1, max_drop=0.01)
    with pytest.raises(ValueError, match=r"`monitor`.*'val_accuracy'.*not in the logs.*validation data"):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[pruning])
    assert all(np.all(mask == 1) for mask in all_masks(model))


def test_bad_budget_arguments_are_named():
    with pytest.raises(ValueError, match=r"`max_drop`.*max_drop=-0.1"):
        AnnealedPruning(schedules.FSA(0.5), max_drop=-0.1)
    with pytest.raises(ValueError, match=r"`mode`.*mode='up'"):
        AnnealedPruning(schedules.FSA(0.5), max_drop=0.1, mode="up")
    with pytest.raises(TypeError, match=r"`reference`.*reference='high'"):
        AnnealedPruning(schedules.FSA(0.5), max_drop=0.1, reference="high")
    assert AnnealedPruning(schedules.FSA(0.5), monitor="val_loss", max_drop=0.1).budget.mode == "min"


def test_per_layer_sparsity_reaches_the_logs_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    model = compiled(keras_anneal.prune_model(small_mlp(hidden=32)))
    x, y = regression_data()
    history = model.fit(
        x, y, batch_size=16, epochs=2, verbose=0,
        callbacks=[AnnealedPruning(schedules.ConstantSparsity(0.5), frequency=2, allocation="erk"),
                   keras.callbacks.TensorBoard(log_dir=str(tmp_path))],
    )
    report = {row.name: row.sparsity for row in keras_anneal.sparsity_report(model).layers}
    assert history.history["sparsity/masked_hidden"][-1] == pytest.approx(report["masked_hidden"])
    assert report["masked_hidden"] != report["masked_out"]  # ERK: not uniform.
    files = glob.glob(str(tmp_path / "train" / "events.out.tfevents.*"))
    assert files
    events = event_accumulator.EventAccumulator(files[0], size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"] + events.Tags()["scalars"]
    assert "epoch_sparsity/masked_hidden" in tags and "epoch_sparsity/masked_out" in tags
    value = tensor_util.make_ndarray(events.Tensors("epoch_sparsity/masked_out")[-1].tensor_proto)
    assert value == pytest.approx(report["masked_out"])


def test_sensitivity_scan_restores_masks_and_orders_layers():
    model, x, y = budget_problem()
    keras_anneal.prune(model, sparsity=0.1)
    before = all_masks(model)
    scan = keras_anneal.sensitivity_scan(model, x, y, sparsities=[0.3, 0.6, 0.9])
    for old, new in zip(before, all_masks(model)):
        np.testing.assert_array_equal(old, new)
    assert scan.metric == "accuracy" and scan.mode == "max"
    assert len(scan.results["masked_dense"]) == 3
    assert scan.results["masked_dense"][-1] < scan.baseline  # 90% of a teacher hurts.
    assert "| masked_dense |" in scan.to_markdown()
    tolerated = scan.tolerated(max_drop=1.0)
    assert tolerated == {"masked_dense": 0.9}
    assert scan.tolerated(max_drop=0.0)["masked_dense"] <= 0.3


def test_sensitivity_scan_refuses_sparsities_below_what_a_layer_has_lost():
    model, x, y = budget_problem()
    keras_anneal.prune(model, sparsity=0.6)
    before = all_masks(model)
    with pytest.raises(ValueError, match=r"`sparsities`.*current sparsity.*'masked_dense': 0.6.*\[0.5, 0.9\]"):
        keras_anneal.sensitivity_scan(model, x, y, sparsities=[0.5, 0.9])
    for old, new in zip(before, all_masks(model)):
        np.testing.assert_array_equal(old, new)


def test_sensitivity_allocation_keeps_more_of_the_fragile_layer():
    keras.utils.set_random_seed(0)
    model = compiled(keras_anneal.prune_model(small_mlp(hidden=32)))
    x, y = regression_data()
    alloc = keras_anneal.SensitivityScan(
        "loss", "min", 1.0, [0.5, 0.9],
        {"masked_hidden": [1.0, 1.01], "masked_out": [5.0, 9.0]},
    ).allocation(max_drop=0.1)
    assert alloc.tolerated == {"masked_hidden": 0.9, "masked_out": 0.0}
    keras_anneal.prune(model, sparsity=0.5, allocation=alloc)
    hidden, out = keras_anneal.sparsity_report(model).layers
    assert hidden.sparsity > 0.5 > out.sparsity
    restored = allocation.get(keras.saving.serialize_keras_object(alloc))
    assert restored == alloc


def test_sensitivity_scan_plots(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    model, x, y = budget_problem()
    ax = keras_anneal.sensitivity_scan(model, x, y, sparsities=[0.5]).plot()
    assert ax.get_xlabel() == "sparsity of the layer alone" and len(ax.lines) == 2


def test_per_layer_dict_keeps_none_layers_dense_when_every_layer_is_named():
    w = [np.ones((10, 10)), np.ones((9, 11))]
    masks = allocation.PerLayer({"a": None, "b": 0.5}).masks(
        w, [np.ones_like(x) for x in w], 10 / 199, layers=["a", "b"], final_sparsity=0.25)
    assert pruned_counts(masks) == [0, 10]


@pytest.mark.parametrize("form", ["dict", "callable"])
def test_every_layer_at_the_overall_sparsity_is_exact_despite_rounding(form):
    # 0.45 of 128 and of 64 floor to 57 + 28 = 85, but 0.45 of 192 is 86:
    # the weight left over by rounding goes to one of the layers.
    choice = ({"masked_hidden": 0.45, "masked_out": 0.45} if form == "dict"
              else lambda sparsity, sizes: {name: sparsity for name in sizes})
    model = compiled(keras_anneal.prune_model(small_mlp()))
    x, y = regression_data()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[
        AnnealedPruning(schedules.ConstantSparsity(0.45), frequency=1, allocation=choice)])
    hidden, out = pruned_counts(all_masks(model)[:2])
    assert hidden + out == 86 and hidden in (57, 58) and out in (28, 29)
    model = compiled(keras_anneal.prune_model(small_mlp()))
    keras_anneal.prune(model, sparsity=0.45, allocation=choice)
    assert sum(pruned_counts(all_masks(model))) == 86


def test_per_layer_dict_never_undoes_pruning_along_the_plan():
    w = [np.ones((20, 25)), np.ones((20, 25))]
    alloc, masks = allocation.PerLayer({"a": 0.8}), [np.ones((20, 25)), np.ones((20, 25))]
    for sparsity in (8.85 / 1000, 10.05 / 1000, 0.2, 0.5):
        new = alloc.masks(w, masks, sparsity, layers=["a", "b"], final_sparsity=0.5)
        assert sum(pruned_counts(new)) == math.floor(sparsity * 1000 + 1e-9)
        for before, after in zip(masks, new):
            assert np.all(after[before == 0] == 0)
        masks = new
    assert pruned_counts(masks) == [400, 100]


def test_one_shot_pruning_names_an_unknown_layer_and_changes_nothing():
    model = keras_anneal.prune_model(small_mlp())
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"`allocation`.*\['masked_nope'\].*masked_hidden"):
        keras_anneal.prune(model, sparsity=0.5, allocation={"masked_nope": 0.5})
    with pytest.raises(ValueError, match=r"\['hidden'\].*'masked_' \+ the layer's name.*use 'masked_hidden' for 'hidden'\."):
        keras_anneal.prune(model, sparsity=0.5, allocation={"hidden": None})  # The inner name.
    with pytest.raises(ValueError, match="`model` has no `keras_anneal.Masked` layer"):
        keras_anneal.prune(small_mlp(), "obs", sparsity=0.5, data=np.ones((4, 8)))
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("restore_weights", [True, False])
def test_budget_brings_back_the_weights_measured_within_it(restore_weights):
    """Training on (learning rate > 0): restoring the masks alone does not
    give back the model that was measured; `restore_weights` does."""
    model, x, y = budget_problem()
    model.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    weights_at_epoch_end = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: weights_at_epoch_end.append(model.get_weights()))
    pruning = AnnealedPruning(StepSchedule(), frequency=1, max_drop=0.3, reference=1.0,
                              restore_weights=restore_weights)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_data=(x, y),
              shuffle=False, callbacks=[record, pruning])
    assert (pruning.budget_stop.epoch, pruning.budget_stop.restored_epoch) == (2, 1)
    same = all(np.array_equal(a, b)
               for a, b in zip(weights_at_epoch_end[1], model.get_weights()))
    assert same == restore_weights


def regression_teacher():
    """A model compiled with an error metric whose name says nothing of its direction."""
    keras.utils.set_random_seed(0)
    model = keras_anneal.prune_model(keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(1, name="out")]))
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    y = model.predict(x, verbose=0)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", metrics=["mae"])
    return model, x, y


def test_a_metric_that_goes_down_is_read_as_one_by_the_scan_and_the_budget():
    model, x, y = regression_teacher()
    scan = keras_anneal.sensitivity_scan(model, x, y, sparsities=[0.5, 0.9])
    assert scan.metric == "mae" and scan.mode == "min"  # As EarlyStopping(mode="auto") reads it.
    assert all(drop > 0 for layer in scan.results for drop in scan.drops(layer))  # Worse: a drop.
    assert keras_anneal.sensitivity_scan(model, x, y, sparsities=[0.5], mode="max").mode == "max"
    with pytest.raises(ValueError, match=r"`mode`.*mode='down'"):
        keras_anneal.sensitivity_scan(model, x, y, sparsities=[0.5], mode="down")
    pruning = AnnealedPruning(schedules.ConstantSparsity(0.5), monitor="val_mae", max_drop=1.0)
    assert pruning.budget.mode == "max"  # From the name alone, before fit...
    model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y), callbacks=[pruning])
    assert pruning.budget.mode == "min"  # ...and from the metric once it has run.


@pytest.mark.parametrize("choice", ["uniform", "global", "lamp"])
def test_the_guard_keeps_each_units_best_scoring_weight(choice):
    model = keras_anneal.prune_model(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")]))
    kernel = np.array([[9.0, 0.1, -0.3],   # The three largest |w| all feed unit 0...
                       [8.0, -0.4, 0.2],
                       [7.0, 0.3, 0.1],
                       [0.5, 0.2, -0.05]], "float32")
    model.layers[0].layer.kernel.assign(kernel)
    keras_anneal.prune(model, sparsity=0.75, allocation=choice)  # 9 of 12: one weight a unit.
    (mask,) = model.layers[0].get_masks()
    np.testing.assert_array_equal(np.argwhere(mask), [[0, 0], [0, 2], [1, 1]])  # ...each keeps its best.


def test_lamp_orders_ties_by_position_as_a_stable_sort_does():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, size=2000).astype("float64")  # Many ties, zeros included.
    np.testing.assert_array_equal(allocation._ascending_order(values),
                                  np.argsort(values, kind="stable"))
    weights = rng.choice([-2.0, -1.0, 0.0, 1.0, 3.0], size=(40, 25))
    squares = np.square(weights).ravel()
    order = np.argsort(squares, kind="stable")  # The formula with ties by position.
    suffix = np.cumsum(squares[order][::-1])[::-1]
    expected = np.empty_like(squares)
    expected[order] = np.where(suffix > 0, squares[order] / np.where(suffix > 0, suffix, 1), 0.0)
    np.testing.assert_allclose(allocation.lamp_scores(weights).ravel(), expected, rtol=1e-12)


@pytest.mark.parametrize("rest", ["global", "erk", "lamp"])
def test_per_layer_rest_allocates_the_free_layers_as_that_allocation_would(rest):
    rng = np.random.default_rng(0)
    w = [rng.normal(size=(6, 4)), rng.normal(size=(30, 8)), rng.normal(size=(8, 3))]
    ones = [np.ones_like(x) for x in w]
    masks = allocation.PerLayer({"a": None}, rest=rest).masks(
        w, ones, 0.6, weights=w, layers=["a", "b", "c"])
    n_pruned = math.floor(0.6 * sum(x.size for x in w))
    assert pruned_counts(masks)[0] == 0 and sum(pruned_counts(masks)) == n_pruned
    # The two free layers alone, asked for the same count: the same masks.
    alone = allocation.get(rest).masks(
        w[1:], ones[1:], n_pruned / sum(x.size for x in w[1:]), weights=w[1:], layers=["b", "c"])
    for got, expected in zip(masks[1:], alone):
        np.testing.assert_array_equal(got, expected)


def test_per_layer_rest_round_trips_and_is_checked():
    original = allocation.PerLayer({"masked_out": None}, rest="lamp")
    config = keras.saving.serialize_keras_object(original)
    assert allocation.get(config) == original and original.rest == allocation.LAMP()
    assert "rest" not in allocation.PerLayer({"masked_out": None}).get_config()
    for bad in ("best", allocation.PerLayer({"a": None}), 3):
        with pytest.raises(ValueError, match=r"`rest`.*'lamp'.*rest="):
            allocation.PerLayer({"a": None}, rest=bad)
