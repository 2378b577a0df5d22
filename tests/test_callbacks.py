import csv
import os
import re
import warnings

import keras
import numpy as np
import pytest
from conftest import regression_data
from conftest import small_mlp

import keras_anneal
from keras_anneal import schedules
from keras_anneal.callbacks import AnnealedPruning


def compiled(model, learning_rate=0.05):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    return model


def pruned_mlp(**kwargs):
    return compiled(keras_anneal.prune_model(small_mlp(**kwargs)))


def all_masks(model):
    return [mask for layer in keras_anneal.masked_layers(model) for mask in layer.get_masks()]


class MaskRecorder(keras.callbacks.Callback):
    """Snapshots the masks each training step runs with."""

    def on_train_begin(self, logs=None):
        self.snapshots = []

    def on_train_batch_begin(self, batch, logs=None):
        self.snapshots.append(all_masks(self.model))


class StepRecordingSchedule(schedules.PruningSchedule):
    """Records the steps it is asked about; prunes 1% more at each."""

    final_sparsity = 0.9

    def __init__(self):
        self.steps = []

    def __call__(self, step, total_steps=None):
        self.steps.append(step)
        return min(0.9, step / 100)

    def get_config(self):
        return {}


@pytest.mark.parametrize("sparsity", [0.3, 0.55, 0.9])
def test_layer_scope_prunes_exact_count_per_layer(sparsity):
    model = pruned_mlp()
    x, y = regression_data()
    pruning = AnnealedPruning(
        schedules.ConstantSparsity(sparsity), frequency=2, allocation="uniform",
        keep_units_connected=False,
    )
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[pruning])
    masks = all_masks(model)
    pruned, total = keras_anneal.masking.count_pruned(masks)
    assert pruned == int(np.floor(sparsity * total + 1e-9))  # Exact overall.
    for mask in masks:  # Uniform: floor(s n) each, one more where the total needs it.
        floor = int(np.floor(sparsity * mask.size + 1e-9))
        assert floor <= mask.size - np.count_nonzero(mask) <= floor + 1


@pytest.mark.parametrize("sparsity", [0.3, 0.9])
def test_global_scope_prunes_exact_count_over_the_model(sparsity):
    # Learning rate 0: the weights stay those the ranking saw.
    model = compiled(keras_anneal.prune_model(small_mlp()), learning_rate=0.0)
    x, y = regression_data()
    callback = AnnealedPruning(
        schedules.ConstantSparsity(sparsity), frequency=2, scope="global", keep_units_connected=False
    )
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    masks = all_masks(model)
    total = sum(mask.size for mask in masks)
    pruned = sum(mask.size - np.count_nonzero(mask) for mask in masks)
    assert pruned == int(np.floor(sparsity * total + 1e-9))
    # Ranked together: every kept weight outweighs every pruned one, in any layer.
    layers = keras_anneal.masked_layers(model)
    weights = [keras.ops.convert_to_numpy(w) for layer in layers for w in layer.prunable_weights]
    kept = np.concatenate([np.abs(w[m == 1]) for w, m in zip(weights, masks)])
    dropped = np.concatenate([np.abs(w[m == 0]) for w, m in zip(weights, masks)])
    assert kept.min() >= dropped.max()
    assert callback.sparsity == pytest.approx(pruned / total)


def test_pruning_is_cumulative_and_follows_the_schedule():
    model = pruned_mlp()
    x, y = regression_data()
    schedule = schedules.FSA(final_sparsity=0.8, mu=2.0, end_fraction=0.75)
    recorder = MaskRecorder()
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0, shuffle=False,
                        callbacks=[AnnealedPruning(schedule, frequency=3, allocation="uniform"), recorder])
    total_steps = 4 * 8
    # Step `s` (0-based) runs with the masks of the last update due, at the
    # largest multiple of `frequency` <= s.
    for step, masks in enumerate(recorder.snapshots):
        due = step - step % 3
        target = schedule(due, total_steps)
        pruned, total = keras_anneal.masking.count_pruned(masks)
        assert pruned == int(np.floor(target * total + 1e-9))
        for mask in masks:
            floor = int(np.floor(target * mask.size + 1e-9))
            assert floor <= mask.size - np.count_nonzero(mask) <= floor + 1
    for earlier, later in zip(recorder.snapshots, recorder.snapshots[1:]):
        for before, after in zip(earlier, later):
            assert np.all(after[before == 0] == 0)  # Pruned stays pruned.
    sparsities = history.history["sparsity"]
    assert sparsities == sorted(sparsities) and sparsities[0] > 0
    assert sparsities[-1] == pytest.approx(keras_anneal.sparsity_report(model).sparsity)


def test_a_sparsity_alone_anneals_on_the_recommended_plan():
    model = pruned_mlp()
    x, y = regression_data()
    recorder = MaskRecorder()
    pruning = AnnealedPruning(0.5, frequency=1)
    assert pruning.schedule.get_config() == schedules.recommended(0.5).get_config()
    model.fit(x, y, batch_size=8, epochs=5, verbose=0, shuffle=False, callbacks=[pruning, recorder])
    pruned = [keras_anneal.masking.count_pruned(masks)[0] for masks in recorder.snapshots]
    total = keras_anneal.masking.count_pruned(recorder.snapshots[0])[1]
    # 40 steps: nothing pruned up to step 8 (20%), all of it from step 32 (80%) on.
    assert pruned[:9] == [0] * 9 and pruned[9] > 0
    assert pruned == sorted(pruned)
    assert pruned[32:] == [int(np.floor(0.5 * total))] * 8
    assert keras_anneal.sparsity_report(model).sparsity == pytest.approx(
        int(np.floor(0.5 * total)) / total)


class ForgetsTrainBeginQueries(keras.callbacks.Callback):
    """Placed after `AnnealedPruning`: keeps only the schedule's queries of updates."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_train_begin(self, logs=None):
        self.schedule.steps.clear()


def test_updates_happen_every_frequency_optimizer_steps():
    schedule = StepRecordingSchedule()
    model = pruned_mlp()
    x, y = regression_data()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[
        AnnealedPruning(schedule, frequency=5), ForgetsTrainBeginQueries(schedule)])
    # The update before the first step, then one every 5 steps (the plan
    # completes at step 90, after this fit's 24 steps).
    assert schedule.steps == [0, 5, 10, 15, 20]


def test_the_plan_reaches_its_final_sparsity_between_two_updates():
    model = pruned_mlp()
    x, y = regression_data()  # 64 samples, batch 8: 40 steps in 5 epochs.
    recorder = MaskRecorder()
    pruning = AnnealedPruning(schedules.FSA(0.5, mu=0.0, end_step=23), frequency=10)
    model.fit(x, y, batch_size=8, epochs=5, verbose=0, shuffle=False, callbacks=[pruning, recorder])
    pruned = [keras_anneal.masking.count_pruned(masks)[0] for masks in recorder.snapshots]
    total = keras_anneal.masking.count_pruned(recorder.snapshots[0])[1]
    changed_at = [step for step in range(1, 40) if pruned[step] != pruned[step - 1]]
    assert changed_at == [10, 20, 23]  # Every 10 steps, and where the plan ends.
    assert pruned[23] == int(np.floor(0.5 * total)) == pruned[-1]


def test_a_plan_this_fit_cannot_follow_is_a_warning():
    x, y = regression_data()  # 8 steps an epoch at batch 8.
    cases = [
        (schedules.ConstantSparsity(0.5, begin_step=20), 50, "prunes nothing by step 16"),
        (schedules.FSA(0.5, begin_step=4, end_step=12), 50,
         "rises from 0 at step 4 to 0.5 at step 12, within frequency=50"),
        (schedules.ConstantRate(0.1, interval=6, final_sparsity=0.5), 4, "interval=6.*frequency=4.*frequency=6"),
    ]
    for schedule, frequency, message in cases:
        model = pruned_mlp()
        with pytest.warns(UserWarning, match=message):
            model.fit(x, y, batch_size=8, epochs=2, verbose=0,
                      callbacks=[AnnealedPruning(schedule, frequency=frequency)])


def test_completion_steps_of_the_schedules():
    assert schedules.recommended(0.9).completion_step(total_steps=96) == 77  # round(0.8 * 96)
    assert schedules.FSA(0.9, end_step=30).completion_step() == 30
    assert schedules.FSA(0.9, end_fraction=0.5).completion_step() is None
    assert schedules.ConstantSparsity(0.5, begin_step=7).completion_step() == 7
    # The default bisection: 0.1 more every 6 steps reaches 0.3 at step 18.
    assert schedules.ConstantRate(0.1, interval=6, final_sparsity=0.3).completion_step(100) == 18
    assert schedules.ConstantRate(0.1, interval=6, final_sparsity=0.3).completion_step(17) is None
    assert StepRecordingSchedule().completion_step(total_steps=200) == 90


def test_with_steps_per_execution_an_update_lands_at_the_next_boundary():
    if keras.backend.backend() == "torch":
        pytest.skip("Keras' PyTorch trainer runs one step per execution")
    schedule = StepRecordingSchedule()
    model = keras_anneal.prune_model(small_mlp())
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", steps_per_execution=2)
    x, y = regression_data()  # 64 samples, batch 8: 8 steps an epoch, callbacks at every 2nd.
    recorder = MaskRecorder()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[
        AnnealedPruning(schedule, frequency=5), ForgetsTrainBeginQueries(schedule), recorder])
    # Due at steps 0, 5, 10, 15 and 20; the callbacks run at steps 0, 2, 4, ..., 22.
    assert schedule.steps == [0, 5, 10, 15, 20]
    sparsity = [masking_sparsity(masks) for masks in recorder.snapshots]
    changed_at = [2 * i for i in range(1, len(sparsity)) if sparsity[i] != sparsity[i - 1]]
    assert changed_at == [6, 10, 16, 20]  # The first boundary at or after each due step.
    assert sparsity[-1] == pytest.approx(0.20, abs=0.01)


def test_constant_sparsity_applies_before_the_first_step():
    model = pruned_mlp()
    x, y = regression_data()
    recorder = MaskRecorder()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[
        AnnealedPruning(schedules.ConstantSparsity(0.5), frequency=1000), recorder])
    first_step_masks = recorder.snapshots[0]
    assert masking_sparsity(first_step_masks) == pytest.approx(0.5)


def masking_sparsity(masks):
    pruned, total = keras_anneal.masking.count_pruned(masks)
    return pruned / total


def test_sparsity_reaches_csv_logger(tmp_path):
    model = pruned_mlp()
    x, y = regression_data()
    path = os.path.join(tmp_path, "log.csv")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[
        AnnealedPruning(schedules.ConstantSparsity(0.5), frequency=1),
        keras.callbacks.CSVLogger(path),
    ])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [float(row["sparsity"]) for row in rows] == [0.5, 0.5]


def test_the_logged_sparsity_is_the_one_the_epochs_validation_measured():
    model = pruned_mlp()
    x, y = regression_data()
    pruning = AnnealedPruning(schedules.FSA(0.8, mu=0, end_fraction=1.0), frequency=2)
    validated = []

    class AtValidation(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            validated.append(pruning.sparsity)

    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0, validation_data=(x, y),
                        callbacks=[pruning, AtValidation()])
    assert len(set(validated)) == 4  # The sparsity grows each epoch ...
    assert history.history["sparsity"] == validated  # ... and its log pairs with `val_loss`.


def test_one_callback_serves_two_fits():
    callback = AnnealedPruning(schedules.ConstantSparsity(0.5), frequency=1)
    x, y = regression_data()
    first = pruned_mlp()
    first.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    second = pruned_mlp(hidden=10)
    second.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    assert keras_anneal.sparsity_report(first).sparsity == pytest.approx(0.5)
    assert keras_anneal.sparsity_report(second).sparsity == pytest.approx(0.5)


def test_subclassed_model_with_masked_layers():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.body = keras_anneal.Masked(keras.layers.Dense(16, activation="relu"))
            self.head = keras_anneal.Masked(keras.layers.Dense(4))

        def call(self, x):
            return self.head(self.body(x))

    model = compiled(Net())
    x, y = regression_data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=[AnnealedPruning(schedules.ConstantSparsity(0.75), frequency=4)])
    assert keras_anneal.sparsity_report(model).sparsity == pytest.approx(0.75)


class InterruptAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("Interrupted on purpose.")


def resume_setup(regrowth=False):
    keras.utils.set_random_seed(7)
    model = pruned_mlp()
    if regrowth:  # The plan completes at step 8 (of 20); regrowth goes on to step 19.
        return model, AnnealedPruning(
            schedules.FSA(final_sparsity=0.85, end_fraction=0.4), frequency=3,
            regrowth=keras_anneal.Regrowth(fraction=0.3, seed=0, end_fraction=0.95))
    callback = AnnealedPruning(schedules.FSA(final_sparsity=0.85, mu=1.0, end_fraction=0.9), frequency=3)
    return model, callback


@pytest.mark.parametrize("interrupted_epoch, regrowth", [(0, False), (2, False), (2, True)])
def test_resumed_training_ends_with_the_same_masks(tmp_path, interrupted_epoch, regrowth):
    x, y = regression_data()
    fit = dict(x=x, y=y, batch_size=16, epochs=5, verbose=0, shuffle=False)

    model, callback = resume_setup(regrowth)
    model.fit(**fit, callbacks=[callback])
    uninterrupted = all_masks(model)

    backup = os.path.join(tmp_path, "backup")
    model, callback = resume_setup(regrowth)
    with pytest.raises(RuntimeError, match="on purpose"):
        model.fit(**fit, callbacks=[
            callback,
            keras.callbacks.BackupAndRestore(backup),
            InterruptAfterEpoch(interrupted_epoch),
        ])
    if regrowth:  # Stopped after the plan's end, while regrowth moves the masks.
        assert callback.sparsity == pytest.approx(0.85, abs=0.01)
    else:
        assert callback.sparsity < 0.85  # Stopped before the end of the plan.

    model, callback = resume_setup(regrowth)  # A fresh process would start like this.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model.fit(**fit, callbacks=[callback, keras.callbacks.BackupAndRestore(backup)])
    assert not [w for w in caught if "AnnealedPruning" in str(w.message)]  # A resume, no cut.
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 5 * 4
    for resumed, expected in zip(all_masks(model), uninterrupted):
        np.testing.assert_array_equal(resumed, expected)
    assert keras_anneal.sparsity_report(model).sparsity == pytest.approx(0.85, abs=0.01)


def test_model_without_masked_layers_is_a_clear_error_and_is_not_trained():
    model = compiled(small_mlp())
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    x, y = regression_data()
    with pytest.raises(ValueError, match="no `keras_anneal.Masked` layer.*prune_model"):
        model.fit(x, y, verbose=0, callbacks=[AnnealedPruning(schedules.FSA(0.5))])
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))


def test_end_fraction_without_known_length_is_a_clear_error():
    model = pruned_mlp()
    x, y = regression_data()

    def batches():
        while True:
            yield x[:8], y[:8]

    callback = AnnealedPruning(schedules.FSA(0.5, end_fraction=0.5))
    with pytest.raises(ValueError, match="end_fraction=0.5.*steps_per_epoch"):
        model.fit(batches(), epochs=1, steps_per_epoch=None, verbose=0, callbacks=[callback])
    # A bare sparsity: the message speaks of what the user wrote.
    with pytest.raises(ValueError, match=r"AnnealedPruning\(0.5\) anneals on `schedules.recommended`"
                                         r".*steps_per_epoch"):
        model.fit(batches(), epochs=1, steps_per_epoch=None, verbose=0,
                  callbacks=[AnnealedPruning(0.5)])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(frequency=0), ValueError, "frequency=0"),
        (dict(frequency=-3), ValueError, "frequency=-3"),
        (dict(frequency=2.5), TypeError, "frequency=2.5"),
        (dict(scope="model"), ValueError, r"scope.*'layer', 'global'.*scope='model'"),
        (dict(schedule="0.9"), TypeError, "schedule=.0.9."),
        (dict(schedule=1.0), ValueError, "schedule=1.0"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    arguments = {"schedule": schedules.FSA(0.9), **kwargs}
    with pytest.raises(error, match=message):
        AnnealedPruning(**arguments)


def test_exported_at_top_level():
    assert keras_anneal.AnnealedPruning is AnnealedPruning


def test_dropout_scaling_warns_of_a_dropout_no_masked_layer_follows():
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6,)), keras.layers.Dropout(0.5, name="before"), keras.layers.Dense(4),
        keras.layers.Dropout(0.3, name="after")]))
    model.compile(optimizer="sgd", loss="mse")
    with pytest.warns(UserWarning, match=r"\['after'\] at their rates.*pairs="):
        model.fit(np.ones((8, 6)), np.ones((8, 4)), epochs=1, verbose=0,
                  callbacks=[keras_anneal.DropoutScaling()])


def test_a_fit_stopped_before_the_plan_ends_says_so():
    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    keras.utils.set_random_seed(0)
    x, y = regression_data()
    model = keras_anneal.prune_model(small_mlp())
    model.compile(optimizer="sgd", loss="mse")
    pruning = AnnealedPruning(0.8, frequency=1)
    with pytest.warns(UserWarning, match=r"stopped after 4 of its 16 steps, at sparsity 0.078\d*, before"):
        model.fit(x, y, batch_size=16, epochs=4, verbose=0,
                  callbacks=[pruning, StopAfterFirstEpoch()])
    assert 0 < pruning.sparsity < 0.1
    # The whole fit: the plan ends at 80%, and nothing is said.
    model = keras_anneal.prune_model(small_mlp())
    model.compile(optimizer="sgd", loss="mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(x, y, batch_size=16, epochs=4, verbose=0,
                  callbacks=[AnnealedPruning(0.8, frequency=1)])
    assert keras_anneal.sparsity_report(model).sparsity == pytest.approx(0.8, abs=0.01)


def test_a_plan_already_under_way_on_an_unpruned_model_says_it_goes_at_once():
    x, y = regression_data()
    model = keras_anneal.prune_model(small_mlp())
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=16, epochs=4, verbose=0)  # Dense training first: 16 steps.
    with pytest.warns(UserWarning, match=r"starts at optimizer step 16, where FSA already expects "
                                         r"sparsity 0.8.*prune a fresh copy"):
        model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[AnnealedPruning(0.8, frequency=1)])
    assert keras_anneal.sparsity_report(model).sparsity == pytest.approx(0.8, abs=0.01)
    # The advice: a fresh copy, whose optimizer starts at 0, anneals with nothing said.
    fresh = keras_anneal.prune_model(keras_anneal.strip(model))
    fresh.compile(optimizer="sgd", loss="mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fresh.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[AnnealedPruning(0.8, frequency=1)])


def test_initial_epoch_on_a_fresh_model_is_named_when_the_plan_ends_short():
    x, y = regression_data()
    model = keras_anneal.prune_model(small_mlp())
    model.compile(optimizer="sgd", loss="mse")
    before_training = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first_batch = keras.callbacks.LambdaCallback(
            on_train_batch_begin=lambda batch, logs: before_training.append(len(caught)))
        model.fit(x, y, batch_size=16, epochs=4, initial_epoch=2, verbose=0,
                  callbacks=[AnnealedPruning(0.8, frequency=1), first_batch])
    said = [str(w.message) for w in caught if "initial_epoch" in str(w.message)]
    assert len(said) == 1 and before_training[0] >= 1  # Once, before the first step.
    assert re.search(r"epochs=4 × 4 steps.*initial_epoch=2 with the optimizer at step 0, so it "
                     r"will end at sparsity 0.\d+, before the plan reached 0.8", said[0])


def _loop_model():
    model = keras_anneal.prune_model(keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(32, 6)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")


def _train_by_hand(model, callbacks, x, y, epochs=3, steps=4, step=None):
    """A training loop without `fit`, with its callbacks as Keras' guide runs them."""
    step = step or (lambda xb, yb: model.train_on_batch(xb, yb))
    callbacks.on_train_begin()
    logs = {}
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        for batch in range(steps):
            callbacks.on_train_batch_begin(batch)
            rows = slice(8 * batch, 8 * batch + 8)
            logs = {"loss": float(step(x[rows], y[rows]))}
            callbacks.on_train_batch_end(batch, logs)
        callbacks.on_epoch_end(epoch, logs)
    callbacks.on_train_end(logs)
    return logs


def test_a_training_loop_without_fit_anneals_through_a_callback_list():
    model, x, y = _loop_model()
    pruning = keras_anneal.AnnealedPruning(0.75, frequency=1)
    callbacks = keras.callbacks.CallbackList([pruning], model=model, epochs=3, steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _train_by_hand(model, callbacks, x, y)
    assert keras_anneal.sparsity_report(model).sparsity == pytest.approx(0.75, abs=0.01)
    assert pruning.sparsity == pytest.approx(0.75, abs=0.01)
    assert int(model.optimizer.iterations) == 12


def test_a_loop_that_steps_another_optimizer_is_told_the_plan_did_not_move():
    model, x, y = _loop_model()
    other = keras.optimizers.SGD(0.01)

    def step(xb, yb):  # Gradients applied by an optimizer that is not the model's.
        loss, grads = _loss_and_gradients(model, xb, yb)
        other.apply(grads, model.trainable_variables)
        return loss

    callbacks = keras.callbacks.CallbackList(
        [keras_anneal.AnnealedPruning(0.75, frequency=1)], model=model, epochs=3, steps=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _train_by_hand(model, callbacks, x, y, step=step)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)
                and "AnnealedPruning" in str(w.message)]
    assert len(messages) == 1, messages  # Once, and not the EarlyStopping hint.
    assert "4 training batches ran in epoch 1" in messages[0]
    assert "`model.optimizer.iterations` stayed at 0" in messages[0]
    assert keras_anneal.sparsity_report(model).sparsity < 0.2  # The first epoch's steps only.


def _loss_and_gradients(model, x, y):
    """One backend's gradient of the MSE, as a custom loop computes it."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = keras.ops.mean((model(x, training=True) - y) ** 2)
        return loss, tape.gradient(loss, model.trainable_variables)
    if backend == "torch":
        model.zero_grad()
        loss = keras.ops.mean((model(x, training=True) - keras.ops.convert_to_tensor(y)) ** 2)
        loss.backward()
        return loss.detach(), [v.value.grad for v in model.trainable_variables]
    import jax

    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_of(values):
        outputs, _ = model.stateless_call(values, non_trainable, x, training=True)
        return jax.numpy.mean((outputs - y) ** 2)

    return jax.value_and_grad(loss_of)([v.value for v in model.trainable_variables])


def test_a_loop_of_ones_own_is_told_what_the_callback_needs():
    model, x, y = _loop_model()
    bare = keras_anneal.prune_model(keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)]))
    pruning = keras_anneal.AnnealedPruning(0.75)
    pruning.set_model(bare)  # Never compiled.
    with pytest.raises(ValueError, match=r"model.optimizer.iterations.*has no optimizer: compile it"):
        pruning.on_train_begin()
    pruning = keras_anneal.AnnealedPruning(0.75)
    pruning.set_model(model)  # No `set_params`: the recommended plan has no length.
    with pytest.raises(ValueError, match=r"CallbackList\(\[pruning\], model=model, epochs=\.\.\., "
                                         r"steps=\.\.\.\)"):
        pruning.on_train_begin()
    # A plan in step numbers needs no length.
    pruning = keras_anneal.AnnealedPruning(schedules.FSA(0.5, mu=0, begin_step=0, end_step=8),
                                           frequency=1)
    _train_by_hand(model, keras.callbacks.CallbackList([pruning], model=model), x, y)
    assert keras_anneal.sparsity_report(model).sparsity == pytest.approx(0.5, abs=0.02)


def test_gradient_accumulation_anneals_on_batches_as_fit_counts_them():
    model, x, y = _loop_model()
    model.compile(optimizer=keras.optimizers.SGD(0.01, gradient_accumulation_steps=2), loss="mse")
    pruning = keras_anneal.AnnealedPruning(0.75, frequency=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Neither a stepless epoch nor a short plan.
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[pruning])
    assert int(model.optimizer.iterations) == 6  # Updates: one per two batches.
    assert pruning.sparsity == pytest.approx(0.75, abs=0.01)
