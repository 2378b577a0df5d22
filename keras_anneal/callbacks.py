"""Callbacks that prune a model while it trains."""

import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_anneal import _validation
from keras_anneal import allocation as allocation_module
from keras_anneal import budget as budget_module
from keras_anneal import channel_dependencies
from keras_anneal import criteria
from keras_anneal import gradients
from keras_anneal import masking
from keras_anneal import optimizer_state
from keras_anneal import reversible
from keras_anneal import schedules as schedules_module
from keras_anneal import unit_pruning
from keras_anneal._backend import sync_backend_state
from keras_anneal._metrics import metric_direction
from keras_anneal.layers import layers_without_units
from keras_anneal.models import masked_layers


class AnnealedPruning(keras.callbacks.Callback):
    """Prunes `Masked` layers during `fit`, following an annealing schedule.

    Before the first step, then every `frequency` optimizer updates and at
    the step where the plan reaches its final sparsity, the callback asks
    the schedule for the overall target sparsity `s` at the current step,
    so that exactly `floor(s * N)` of the model's `N` prunable weights are
    pruned; the allocation splits that count among the weight
    tensors (`keras_anneal.allocation`: uniform, global ranking, ERK, LAMP,
    or per-layer sparsities), and the criterion (`|w|` by default) chooses
    which weights go within each. Unless `keep_units_connected=False`, no
    output unit loses its last incoming connection. Pruning is cumulative: a
    pruned weight never comes back, unless `temporary` or `regrowth` say
    otherwise.

    With `max_drop`, the sparsity is bounded by an accuracy budget instead of
    trusted: at each epoch end where the `monitor`ed validation metric is
    more than `max_drop` worse than `reference` (by default the best value
    seen so far in this `fit`), the masks of the last epoch end within the
    budget come back and the sparsity is held there for the rest of `fit`;
    the schedule's final sparsity is then a ceiling. `budget_stop` says
    when and why.

    The step is the optimizer's iteration count, so a training resumed from
    a checkpoint (e.g. with `keras.callbacks.BackupAndRestore`) continues the
    schedule where it stopped. For the same reason, a schedule's
    `end_fraction` is a fraction of `epochs * steps_per_epoch` of this `fit`
    counted from the optimizer's step 0: a second `fit` on an optimizer that
    has already stepped continues the plan rather than starting it again. The
    overall sparsity is written to the epoch logs under `"sparsity"`, and
    each layer's under `"sparsity/<layer name>"`, where `History`,
    `CSVLogger` and `TensorBoard` placed after this callback see them: the
    sparsity the epoch's validation metrics were measured at (an update due
    at the next epoch's first step is made after it). So a plan that ends at
    the last step logs less than the final sparsity, which `self.sparsity`
    and `keras_anneal.sparsity_report(model)` give; and the epoch at which
    an accuracy budget stops pruning logs the sparsity it rejected (its
    `sparsity_held` is 1).

    Masks are never computed from a diverged run: if a prunable weight holds
    NaN or inf at an update, or the loss is not finite at an epoch's end
    (checked at every epoch end), the callback raises a `FloatingPointError` naming the
    weight (or the loss), or, with `on_nonfinite="skip"`, skips the update
    with a warning.

    Args:
        schedule: a `keras_anneal.schedules.PruningSchedule`, or a final
            sparsity such as 0.9 for `keras_anneal.schedules.recommended`
            (a linear ramp from 20% to 80% of the `fit` call's steps).
        frequency: optimizer updates between mask updates, > 0; the step
            at which the plan completes is an update too. Defaults to 50.
        allocation: how the pruned count is split among weight tensors:
            `"uniform"` (every tensor at `s`), `"global"` (criterion scores
            ranked across tensors), `"erk"`, `"lamp"`, a dict from layer
            name to its final sparsity (`None`: left dense) for the other
            layers to absorb uniformly (`allocation.PerLayer(dict,
            rest="lamp")` for another rule), a callable
            `f(sparsity, layer_sizes) -> dict`,
            or a `keras_anneal.allocation.Allocation`. Defaults to `"lamp"`,
            chosen on validation accuracy over four networks
            (`benchmarks/allocation.py`).
        criterion: which weights go: a `keras_anneal.criteria.PruningCriterion`,
            `"magnitude"`, `"random"` or `"largest"`. Defaults to `"magnitude"`.
        temporary: a `keras_anneal.TemporaryRemoval` (noise injection:
            kept weights removed for a while, then returned), or `None`.
            Defaults to `None`.
        regrowth: a `keras_anneal.Regrowth` (drop-and-regrow at the final
            sparsity: SET, or RigL with `grow="gradient"`), or `None`.
            Defaults to `None`.
        regrowth_data: `(x, y)`, training data for `Regrowth(grow="gradient")`:
            at each regrowth, the loss gradients are taken on a random batch
            of `Regrowth.batch_size` rows of it. Defaults to `None`.
        on_nonfinite: `"raise"` or `"skip"`. Defaults to `"raise"`.
        keep_units_connected: never prune an output unit's last incoming
            weight. Defaults to True.
        monitor: the logged metric the budget watches. Defaults to
            `"val_accuracy"`.
        max_drop: the largest accepted drop of `monitor` (e.g. 0.001 for
            0.1 point of accuracy), or `None` for no budget. Defaults to `None`.
        reference: the value the drop is measured from (e.g. the dense
            model's score), or `None` for the best value seen in this `fit`.
            Defaults to `None`.
        mode: `"max"` if larger `monitor` is better, `"min"` if smaller,
            `"auto"` to tell from its name (losses and errors are `"min"`).
            Defaults to `"auto"`.
        restore_weights: when the budget holds the sparsity, bring back every
            weight of the model as it was at the last epoch end within the
            budget, not only its masks (as `EarlyStopping(restore_best_weights=True)`),
            so the model is the one measured within it; the cost is a copy of
            the weights at each such epoch end. Defaults to True.
        granularity: `"weight"`, or `"unit"` to remove whole output units
            (Dense units, convolution filters): `floor(s * units)` of each
            layer's, the units of lowest summed criterion score (L1 norm of
            the incoming weights by default) losing every incoming weight
            and their bias set to 0; layers producing the model's outputs
            keep their units. `keras_anneal.compact` then deletes them.
            Or an N:M pattern such as `"2:4"`: once the plan reaches
            `1 - N/M`, every block of M consecutive inputs of a unit keeps
            its N best weights (the pattern sparse tensor cores run), and
            the sparsity stays there. Defaults to `"weight"`.
        scope: the former name of `allocation`: `"layer"` (uniform) or
            `"global"`. Defaults to `None`.

    Attributes:
        sparsity: the overall sparsity of the permanent masks.
        layer_sparsity: dict from `Masked` layer name to its sparsity.
        budget: the `keras_anneal.budget.AccuracyBudget`, or `None`.
        budget_stop: a `keras_anneal.budget.BudgetStop` once the budget has
            held the sparsity, else `None`.

    Raises:
        TypeError: if `schedule` is neither a pruning schedule nor a number, or `temporary`
            or `regrowth` is of the wrong type.
        ValueError: on a bad `frequency`, `allocation`, `scope`, `criterion`,
            `on_nonfinite`, `max_drop` or `mode`; before the first update,
            if the model has no `Masked` layer or the allocation cannot reach
            the final sparsity (unknown layers, too much pinned, or too few
            weights left to keep every unit connected); at the first epoch
            end of a budgeted `fit`, if `monitor` is not in the logs (the
            masks are put back as they were).
        FloatingPointError: at an update, if a prunable weight is not finite.

    Example:

    >>> x = np.random.rand(64, 8).astype("float32")
    >>> y = np.random.rand(64, 1).astype("float32")
    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)]))
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> history = model.fit(x, y, batch_size=8, epochs=2, verbose=0,
    ...     callbacks=[AnnealedPruning(keras_anneal.schedules.FSA(
    ...         final_sparsity=0.5, end_fraction=0.5), frequency=2)])
    >>> history.history["sparsity"][-1]
    0.5
    """

    def __init__(
        self,
        schedule,
        frequency=50,
        allocation="lamp",
        criterion="magnitude",
        temporary=None,
        regrowth=None,
        regrowth_data=None,
        on_nonfinite="raise",
        keep_units_connected=True,
        monitor="val_accuracy",
        max_drop=None,
        reference=None,
        mode="auto",
        granularity="weight",
        scope=None,
        restore_weights=True,
    ):
        super().__init__()
        self.schedule = schedules_module.get(schedule)
        given_as_a_number = not isinstance(schedule, (schedules_module.PruningSchedule, dict))
        self._sparsity_given = schedule if given_as_a_number else None
        self.frequency = _validation.check_step("frequency", frequency, positive=True)
        allocation = allocation_module.resolve_scope(allocation, scope, default="lamp")
        self.allocation = allocation_module.get(allocation)
        self.granularity, self._n_of_m = _check_granularity(granularity)
        self.keep_units_connected = _validation.check_bool("keep_units_connected", keep_units_connected)
        self.budget = None
        if max_drop is not None:
            self.budget = budget_module.AccuracyBudget(monitor, max_drop, reference, mode)
        else:  # Checked even unused, so that a typo fails here.
            budget_module.AccuracyBudget(monitor, 0.0, reference, mode)
            given = {name: value for name, value, default in (
                ("monitor", monitor, "val_accuracy"), ("reference", reference, None),
                ("mode", mode, "auto")) if value != default}
            if given:
                raise ValueError(
                    "Arguments `monitor`, `reference` and `mode` describe the accuracy "
                    "budget, which `max_drop` turns on (the largest drop accepted, e.g. "
                    "`max_drop=0.001`); without it they would do nothing. Received: "
                    + ", ".join(f"{name}={value!r}" for name, value in given.items())
                    + ", max_drop=None"
                )
        self.criterion = criteria.get(criterion)
        if self.criterion.needs_data:
            raise ValueError(
                "Argument `criterion` must work from the weights alone during training; "
                f"use it with `keras_anneal.prune(..., data=...)` after training. "
                f"Received: criterion={self.criterion!r}"
            )
        self.temporary = _check_instance("temporary", temporary, reversible.TemporaryRemoval)
        self.regrowth = _check_instance("regrowth", regrowth, reversible.Regrowth)
        self.regrowth_data = _check_regrowth_data(self.regrowth, regrowth_data)
        if self.granularity != "weight":
            if allocation == "lamp":  # The default: whole units go alike in every layer.
                self.allocation = allocation_module.Uniform()
            if type(self.allocation) is not allocation_module.Uniform:
                raise ValueError(
                    f"Argument `granularity`: {self.granularity!r} prunes every layer alike, "
                    "so it needs allocation='uniform'. Received: "
                    f"granularity={self.granularity!r}, allocation={allocation!r}"
                )
            if self.temporary is not None or self.regrowth is not None:
                raise ValueError(
                    f"Argument `granularity`: {self.granularity!r} does not combine with "
                    f"`temporary` or `regrowth`. Received: granularity={self.granularity!r}"
                )
        self.on_nonfinite = _validation.check_choice(
            "on_nonfinite", on_nonfinite, ("raise", "skip")
        )
        self.restore_weights = _validation.check_bool("restore_weights", restore_weights)
        self.sparsity = 0.0
        self.layer_sparsity = {}
        self.budget_stop = None

    def on_train_begin(self, logs=None):
        layers = masked_layers(self.model)
        if not layers:
            raise ValueError(
                "AnnealedPruning found no `keras_anneal.Masked` layer in the model "
                f"'{self.model.name}'. Wrap its layers first: "
                "`model = keras_anneal.prune_model(model)`."
            )
        if getattr(self.model, "optimizer", None) is None:
            raise ValueError(
                "AnnealedPruning counts training steps on `model.optimizer.iterations`, "
                f"and the model '{self.model.name}' has no optimizer: compile it "
                "(`model.compile(optimizer=..., loss=...)`). In a training loop of your "
                "own, train with that optimizer (`model.train_on_batch`, or "
                "`model.optimizer.apply(gradients, model.trainable_variables)`). "
                "Received: model.optimizer=None"
            )
        if self.params is None:  # A loop of the user's that did not call `set_params`.
            self.params = {}
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        self._total_steps = steps * epochs if steps and epochs else None
        try:  # Fails now, not mid-training, on a bad end.
            self.schedule(0, self._total_steps)
        except ValueError as error:
            if self._total_steps is not None or self._sparsity_given is None:
                raise
            raise ValueError(
                f"AnnealedPruning({self._sparsity_given!r}) anneals on "
                "`schedules.recommended`, from 20% to 80% of this `fit`'s steps, so "
                "`fit` must know its length: pass `steps_per_epoch` (or data of known "
                "length), or give a plan in step numbers, e.g. "
                f"`schedules.FSA({self._sparsity_given!r}, mu=0, begin_step=1000, "
                "end_step=4000)`. In a training loop of your own, give the callback the "
                "length: `keras.callbacks.CallbackList([pruning], model=model, "
                "epochs=..., steps=...)`. Received: steps_per_epoch=None"
            ) from error
        self._completion_step = self.schedule.completion_step(self._total_steps)
        self._fit_begin_step = self._optimizer_step() if self._total_steps else 0
        self._warn_on_a_plan_this_fit_cannot_follow()
        if self._total_steps is None and (self.temporary or self.regrowth):
            raise ValueError(
                "`temporary` and `regrowth` end at a fraction of the training, so "
                "`fit` must know its length: pass `steps_per_epoch` (or data of known "
                "length). Received: steps_per_epoch=None"
            )
        self._layers = layers
        self._final_sparsity = self.schedule.final_sparsity
        self.budget_stop = None
        self._held = False
        self._within_budget = None  # Masks, epoch, biases, weights at the last epoch end within it.
        if self.budget is not None:
            self.budget.reset()
        # Gathered at the first update, once every `on_train_begin` has run
        # (`BackupAndRestore` restores the masks there) and the first step
        # has built the layers of subclassed models.
        self._masks = self._weights = self._permanent = None
        self._last_update_step = None
        self._last_target = 0.0  # The schedule's target at the last update.
        self._epoch_begin_step = 0
        self._epoch_batches = 0
        self._stepless_warned = False
        self._first_epoch = None
        self._cut_by_initial_epoch = False
        self._regrowth_start_step = self._regrowth_start()
        self._temporary_in_masks = False
        if self.temporary is not None:
            self.temporary.reset()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_begin_step = self._optimizer_step()
        self._epoch_batches = 0
        if self._first_epoch is None:
            self._first_epoch = epoch  # `initial_epoch`.
            self._warn_if_initial_epoch_cuts_the_plan()

    def _warn_if_initial_epoch_cuts_the_plan(self):
        """Says so before training when `initial_epoch` is ahead of the
        optimizer (weights loaded without it): the plan, counted on the
        optimizer's steps, then ends short."""
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        if not (self._first_epoch and self._total_steps) or self.budget is not None:
            return
        begin = self._epoch_begin_step  # Read after `BackupAndRestore` restored the optimizer.
        last = begin + (epochs - self._first_epoch) * steps
        reached = self.schedule(last, self._total_steps)
        if reached >= self._final_sparsity - 1e-12:
            return
        self._cut_by_initial_epoch = True
        warnings.warn(
            f"AnnealedPruning: the plan is laid on epochs={epochs} × {steps} steps, "
            f"counted on the optimizer from step 0, but this `fit` begins at "
            f"initial_epoch={self._first_epoch} with the optimizer at step "
            f"{begin}, so it will end at sparsity {reached:.4g}, before the "
            f"plan reached {self._final_sparsity}. `initial_epoch` resumes a plan: use it "
            "on the model saved at that epoch (a `.keras` file or `BackupAndRestore` keeps "
            "the optimizer's step), or leave it out.",
            UserWarning,
            stacklevel=2,
        )

    def on_train_batch_begin(self, batch, logs=None):
        # Batch begin, not batch end: overriding `on_train_batch_end` would
        # turn off Keras' asynchronous dispatch of batch logs.
        self._epoch_batches += 1
        self._maybe_update(self._epoch_begin_step + batch)

    def on_epoch_end(self, epoch, logs=None):
        if self._masks is None:
            self._gather()
        self._warn_if_the_optimizer_did_not_step(epoch)
        # Logged as validated: the epoch's `val_*` metrics were measured with
        # these masks, before the update due at the next epoch's first step.
        validated, validated_layers = self.sparsity, dict(self.layer_sparsity)
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            message = (
                f"AnnealedPruning: the training loss is {loss} at the end of epoch "
                f"{epoch + 1}; masks are never computed from a diverged run. Lower the "
                "learning rate, clip the gradients, or pass on_nonfinite='skip'."
            )
            if self.on_nonfinite == "raise":
                self._restore_permanent_masks()
                raise FloatingPointError(message)
            warnings.warn(message + " This update is skipped.", RuntimeWarning, stacklevel=2)
        else:
            if self.budget is not None and not self._held:
                self._check_budget(epoch, logs or {})
            self._maybe_update(self._optimizer_step(), defer_unless_pruning=True)
        if logs is not None:
            logs["sparsity"] = validated
            for name, value in validated_layers.items():
                logs[f"sparsity/{name}"] = value
            if self.budget is not None:
                logs["sparsity_held"] = float(self._held)

    def _warn_if_the_optimizer_did_not_step(self, epoch):
        """Says so, once, when batches ran but `model.optimizer` did not step:
        a loop of the user's that trains with another optimizer."""
        step = self._optimizer_step()
        # Two batches at least: under `fit` on TensorFlow, the batch that finds
        # the data exhausted begins but does not step.
        if self._stepless_warned or self._epoch_batches < 2 or step != self._epoch_begin_step:
            return
        self._stepless_warned = True
        warnings.warn(
            f"AnnealedPruning: {self._epoch_batches} training batches ran in epoch "
            f"{epoch + 1}, but `model.optimizer.iterations` stayed at {step}: the plan "
            "counts the steps of the model's own optimizer, so it stays at this epoch's steps. Train "
            "with `model.optimizer` (`model.train_on_batch`, or "
            "`model.optimizer.apply(gradients, model.trainable_variables)`), not another "
            "optimizer (a LossScaleOptimizer also skips the steps whose gradients are not "
            "finite); a JAX loop of `stateless_call`s does not see the masks the "
            "callback writes: use `fit` or `train_on_batch` there.",
            UserWarning,
            stacklevel=2,
        )

    def _check_budget(self, epoch, logs):
        """Holds the last masks within the budget once `monitor` leaves it.

        Runs before the epoch-end update, so the masks compared are the ones
        the validation metric was measured with.
        """
        monitor = self.budget.monitor
        value = logs.get(monitor)
        if value is None:
            if self._within_budget is None:
                if self._masks is not None:
                    self._write(self._initial, self._initial_biases)
                raise ValueError(
                    f"Argument `monitor`: AnnealedPruning's accuracy budget watches "
                    f"'{monitor}', which is not in the logs at the end of epoch "
                    f"{epoch + 1} (pass validation data to `fit`, with `validation_freq=1`: the "
                    f"budget judges every epoch; or monitor one of "
                    f"{sorted(logs)}). The masks are back as they were. "
                    f"Received: monitor={monitor!r}"
                )
            return  # No validation this epoch (`validation_freq`): nothing to judge.
        self.budget.settle(metric_direction(self.model, monitor))
        within, reference = self.budget.judge(float(value))
        if self._masks is None:
            self._gather()
        if within:
            sync_backend_state(self.model)
            self._within_budget = (
                [mask.copy() for mask in self._permanent], epoch, self._unit_bias_values(),
                self.model.get_weights() if self.restore_weights else None,
            )
            return
        masks, good_epoch, biases, weights = self._within_budget or (
            self._initial, None, self._initial_biases, self._initial_weights
        )
        if weights is not None:
            sync_backend_state(self.model)
            self.model.set_weights(weights)
        self._write(masks, biases)
        self._permanent = [mask.copy() for mask in masks]
        self._temporary_in_masks = False
        self._record(self._permanent)
        self._held = True
        self.budget_stop = budget_module.BudgetStop(
            epoch=epoch,
            restored_epoch=good_epoch,
            sparsity=self.sparsity,
            monitor=monitor,
            value=float(value),
            reference=reference,
            max_drop=self.budget.max_drop,
        )
        if self.params.get("verbose", 1):
            print(f"\nEpoch {epoch + 1}: AnnealedPruning: {self.budget_stop}")

    def _write(self, masks, biases=None):
        """Writes masks (and, for unit pruning, the biases it zeroed) back."""
        sync_backend_state(self.model)
        for variable, value in zip(self._masks, masks):
            variable.assign(value)
        for variable, value in zip(self._unit_biases, biases or []):
            if variable is not None and value is not None:
                variable.assign(value)

    def _unit_bias_values(self):
        """The biases unit pruning zeroes, as NumPy (None unless `granularity="unit"`)."""
        if self.granularity != "unit":
            return None
        return [None if bias is None else ops.convert_to_numpy(bias) for bias in self._unit_biases]

    def on_train_end(self, logs=None):
        self._restore_permanent_masks()
        self._warn_if_the_plan_ended_short()

    def _restore_permanent_masks(self):
        if self._temporary_in_masks:  # Training ends on the permanent masks.
            sync_backend_state(self.model)
            for variable, value in zip(self._masks, self._permanent):
                variable.assign(value)
            self._temporary_in_masks = False

    def _warn_if_the_plan_ended_short(self):
        """Says so when `fit` stopped early (EarlyStopping, `stop_training`)
        before the plan reached its final sparsity."""
        if (self._held or self._last_update_step is None or not self._total_steps
                or self._stepless_warned):  # Said why at an epoch's end.
            return
        ran = self._optimizer_step() - self._fit_begin_step
        if ran >= self._total_steps or self._last_target >= self._final_sparsity - 1e-12:
            return
        resumed = self._first_epoch and (
            ran >= (self.params["epochs"] - self._first_epoch) * self.params["steps"])
        if resumed and self._cut_by_initial_epoch:
            return  # Said before training.
        if resumed:  # Every step it was given ran: `initial_epoch` cut the plan, not a stop.
            warnings.warn(
                f"AnnealedPruning: the plan is laid on epochs={self.params['epochs']} × "
                f"{self.params['steps']} steps, counted on the optimizer from step 0, but "
                f"this `fit` began at initial_epoch={self._first_epoch} with the optimizer "
                f"at step {self._fit_begin_step}, so it ended at sparsity "
                f"{self.sparsity:.4g}, before the plan reached {self._final_sparsity}. "
                "`initial_epoch` resumes a plan: use it on the model saved at that epoch "
                "(its optimizer at that step), or leave it out.",
                UserWarning,
                stacklevel=2,
            )
            return
        warnings.warn(
            f"AnnealedPruning: this `fit` stopped after {ran} of its "
            f"{self._total_steps} steps, at sparsity {self.sparsity:.4g}, before the "
            f"plan reached {self._final_sparsity}. If EarlyStopping stopped it, pass "
            "it `start_from_epoch` past the plan's end, or give a plan that ends "
            f"earlier (e.g. `schedules.FSA({self._final_sparsity!r}, mu=0, "
            "begin_fraction=0.1, end_fraction=0.4)`).",
            UserWarning,
            stacklevel=2,
        )

    def _warn_if_the_plan_began_before_this_fit(self):
        """Says so when the plan expected pruning before this `fit` began, on
        a model with nothing pruned: that part goes at once, not annealed."""
        begin = self._fit_begin_step
        if not begin or self._pruned or not self._total_steps:
            return
        expected = self.schedule(begin - 1, self._total_steps)
        if expected <= 0:
            return
        warnings.warn(
            f"AnnealedPruning: this `fit` starts at optimizer step {begin}, where "
            f"{type(self.schedule).__name__} already expects sparsity {expected:.4g}, but "
            "nothing in the model is pruned: that much goes at once, at the first step, "
            "not annealed. The plan counts the optimizer's steps from 0 (so that a "
            "resumed `fit` goes on with it). To anneal a model that has trained already, "
            "prune a fresh copy (`keras_anneal.prune_model(model)`, compiled anew: its "
            "optimizer starts at step 0), or give a plan in step numbers from "
            f"{begin} on (e.g. `schedules.FSA(0.9, mu=0, begin_step={begin}, end_step=...)`).",
            UserWarning,
            stacklevel=3,
        )

    def _optimizer_step(self):
        """The plan's clock: the optimizer's step counter, in batches. With
        gradient accumulation `iterations` counts updates, one per
        `gradient_accumulation_steps` batches; `_iterations` counts batches,
        as `fit`'s steps do (Keras has no public name for it)."""
        optimizer = self.model.optimizer
        accumulating = getattr(optimizer, "gradient_accumulation_steps", None)
        counter = optimizer._iterations if accumulating else optimizer.iterations
        return int(ops.convert_to_numpy(counter))

    def _warn_on_a_plan_this_fit_cannot_follow(self):
        """Says so when this `fit` is too short for the plan to do its work."""
        if not self._total_steps or self.schedule.final_sparsity == 0:
            return
        end = self._fit_begin_step + self._total_steps
        name = type(self.schedule).__name__
        if self.schedule(end, self._total_steps) == 0:
            warnings.warn(
                f"AnnealedPruning: {name} prunes nothing by step {end}, where this "
                f"`fit` ends ({self._total_steps} steps): it reaches "
                f"{self.schedule.final_sparsity} only later. Train longer or start "
                "the plan earlier.",
                UserWarning,
                stacklevel=3,
            )
            return
        interval = getattr(self.schedule, "interval", None)  # ConstantRate's removals.
        if isinstance(interval, int) and interval % self.frequency:
            warnings.warn(
                f"AnnealedPruning: {name} removes weights every interval={interval} "
                f"steps, but the masks change every frequency={self.frequency} steps, "
                "so removals land late and this `fit` can end short of the plan. "
                f"Pass a `frequency` that divides {interval}, e.g. frequency={interval}.",
                UserWarning,
                stacklevel=3,
            )
        ramp_begin = getattr(self.schedule, "resolve_begin_step", None)
        complete = self._completion_step
        if ramp_begin is None or complete is None:
            return
        ramp_begin = ramp_begin(self._total_steps)
        if ramp_begin < complete and complete - ramp_begin <= self.frequency:
            warnings.warn(
                f"AnnealedPruning: {name} rises from 0 at step {ramp_begin} to "
                f"{self.schedule.final_sparsity} at step {complete}, within "
                f"frequency={self.frequency} steps, so it is applied at once at step "
                f"{complete}, not annealed. Pass a smaller `frequency` (this `fit` "
                f"has {self._total_steps} steps).",
                UserWarning,
                stacklevel=3,
            )

    def _regrowth_start(self):
        """The update after the plan's completion step, where regrowth starts.

        Read from the plan, not from the run, so that a `fit` resumed past it
        (`initial_epoch`, `BackupAndRestore`) decays the drop fraction as the
        uninterrupted one does. None where the completion step is not known:
        regrowth then starts at the first update that prunes nothing at the
        final target.
        """
        complete = self._completion_step
        if self.regrowth is None or complete is None:
            return None
        return complete - complete % self.frequency + self.frequency

    def _due_step(self, step):
        """The last update point at or before `step`: a multiple of
        `frequency`, or the plan's completion step."""
        due = step - step % self.frequency
        complete = self._completion_step
        if complete is not None and due < complete <= step:
            return complete
        return due

    def _maybe_update(self, step, defer_unless_pruning=False):
        """The update due at `step`, if not made yet. With `defer_unless_pruning`
        (at an epoch's end, for the next epoch's first step), one that would
        only regrow or redraw temporary removals waits for that step, so that a
        checkpoint taken at the epoch's end holds the masks before it and a
        resumed `fit` makes it once, as the uninterrupted one does."""
        due = self._due_step(step)
        if due == self._last_update_step or self._held:
            return
        if self._masks is None:
            if not all(layer.built for layer in self._layers):
                return  # Built by the first step; the next update is due after it.
            self._gather()
        target = self.schedule(due, self._total_steps)
        if self.granularity == "unit":
            prune = target > self._unit_target
        elif self._n_of_m:  # Once, when the plan reaches the pattern's sparsity.
            n, m = self._n_of_m
            prune = self._unit_target == 0.0 and target >= 1.0 - n / m - 1e-12
        else:
            prune = masking.pruned_count(target, self._total) > self._pruned
        if self.regrowth is not None and not prune and self._regrowth_start_step is None:
            if target >= self.schedule(self._total_steps, self._total_steps):
                self._regrowth_start_step = due  # A plan whose completion step is not known.
        regrow = self.regrowth is not None and self._regrowth_start_step is not None and (
            self.regrowth.drop_fraction(due, self._regrowth_start_step, self._total_steps) > 0
        )
        noisy = self.temporary is not None and (
            self.temporary.active(due, self._total_steps) or self._temporary_in_masks
        )
        if defer_unless_pruning and not prune:
            self._last_target = target  # Its count is reached: nothing to prune.
            return
        self._last_update_step, self._last_target = due, target
        if not (prune or regrow or noisy):
            return  # Nothing to change: skip reading the weights.
        sync_backend_state(self.model)
        weights = [ops.convert_to_numpy(weight) for weight in self._weights]
        if not self._weights_are_finite(weights, due):
            return
        permanent = self._permanent
        if prune and self.granularity == "unit":
            permanent = self._unit_masks(weights, permanent, target, due)
            self._unit_target = target
        elif prune and self._n_of_m:
            scores = self.criterion.scores(weights, permanent, due)
            permanent = masking.n_of_m_masks(scores, permanent, *self._n_of_m)
            self._unit_target = target
        elif prune:
            permanent = self.criterion.masks(
                weights,
                permanent,
                target,
                self.allocation,
                step=due,
                layers=self._owners,
                final_sparsity=self._final_sparsity,
                keep_units_connected=self.keep_units_connected,
                unit_axes=self._unit_axes,
            )
        regrown = []
        if regrow:
            permanent, regrown = self.regrowth.masks(
                weights, permanent, self.criterion, due, self._regrowth_start_step, self._total_steps,
                gradients=self._regrowth_gradients(due),
            )
        written = permanent
        if noisy:
            written = self.temporary.masks(weights, permanent, due, self._total_steps)
        # Everything is computed: now write weights and masks together.
        for variable, value, grown in zip(self._weights, weights, regrown):
            if grown.any():
                variable.assign(np.where(grown, 0, value).astype(value.dtype))
        self._write(written)
        self._permanent = permanent
        if noisy:
            self._temporary_in_masks = self.temporary.active(due, self._total_steps)
        self._record(permanent)

    def _regrowth_gradients(self, step):
        """`∂L/∂ŵ` on a random batch of `regrowth_data` (RigL), else None."""
        if self.regrowth.grow != "gradient":
            return None
        x, y = self.regrowth_data
        count = len(keras.tree.flatten(x)[0])
        rng = np.random.default_rng([self.regrowth.seed, int(step)])
        rows = np.sort(rng.choice(count, min(self.regrowth.batch_size, count), replace=False))
        batch = keras.tree.map_structure(lambda a: a[rows], (x, y))
        return gradients.effective_weight_gradients(self.model, *batch)

    def _unit_masks(self, weights, permanent, target, step):
        """Whole units removed (output layers excepted); their biases zeroed.

        A kernel whose units are not its trailing axes (a transposed
        convolution's) loses `floor(target * n)` weights one by one instead,
        its filters kept connected as the unit guard asks.
        """
        scores = self.criterion.scores(weights, permanent, step)
        masks = unit_pruning.unit_masks(
            scores, permanent, target, self._unit_axes, groups=self._unit_groups
        )
        masks = [old if output else new for old, new, output in zip(permanent, masks, self._outputs)]
        by_weight = [index for index, (axes, mask) in enumerate(zip(self._unit_axes, permanent))
                     if axes <= 0 and np.ndim(mask) >= 2 and not self._outputs[index]]
        if by_weight:
            chosen = allocation_module.Uniform().masks(
                [scores[i] for i in by_weight], [permanent[i] for i in by_weight], target,
                weights=[weights[i] for i in by_weight],
                keep_units_connected=self.keep_units_connected,
                unit_axes=[self._unit_axes[i] for i in by_weight],
            )
            for index, mask in zip(by_weight, chosen):
                masks[index] = mask
        for bias, mask, axes in zip(self._unit_biases, masks, self._unit_axes):
            if bias is not None and axes > 0 and masking.unit_count(mask.shape, axes):
                dead = ~mask.reshape(-1, masking.unit_count(mask.shape, axes)).any(axis=0)
                if dead.any():
                    value = ops.convert_to_numpy(bias)
                    dead = dead.reshape(value.shape)
                    bias.assign(np.where(dead, 0, value).astype(value.dtype))
                    # Its gradient is cut (`Masked`); its slots go too, so it stays at zero.
                    optimizer_state.zero_slots(self.model.optimizer, bias, dead)
        return masks

    def _weights_are_finite(self, weights, step):
        for name, weight in zip(self._names, weights):
            if not np.all(np.isfinite(weight)):
                message = (
                    f"AnnealedPruning: weight '{name}' holds "
                    f"{int(np.count_nonzero(~np.isfinite(weight)))} non-finite values "
                    f"(NaN or inf) at step {step}; masks are never computed from them. "
                    "The training is diverging: lower the learning rate, clip the "
                    "gradients, or pass on_nonfinite='skip' to skip such updates."
                )
                if self.on_nonfinite == "raise":
                    self._restore_permanent_masks()
                    raise FloatingPointError(message)
                warnings.warn(message + " This update is skipped.", RuntimeWarning, stacklevel=2)
                return False
        return True

    def _gather(self):
        """Collects the mask and weight variables, and the current counts."""
        sync_backend_state(self.model)
        self._masks = [mask for layer in self._layers for mask in layer.masks]
        self._weights = [w for layer in self._layers for w in layer.prunable_weights]
        self._names = [
            f"{layer.name}/{w.name}" for layer in self._layers for w in layer.prunable_weights
        ]
        self._owners = [layer.name for layer in self._layers for _ in layer.masks]
        self._unit_axes = [axes for layer in self._layers for axes in layer.unit_axes]
        _warn_of_layers_without_units(self._layers, self.granularity)
        if self._n_of_m:
            _warn_of_tensors_without_blocks(self._names, self._masks, self._n_of_m)
        self._unit_biases = [bias for layer in self._layers for bias in layer.unit_biases]
        producing = channel_dependencies.output_producers(self.model)
        self._outputs = [id(layer) in producing for layer in self._layers for _ in layer.masks]
        if self.granularity == "unit" and not all(self._outputs):
            _warn_of_units_compact_keeps(self._layers, producing)
        if self.granularity == "unit" and all(self._outputs):
            warnings.warn(
                "AnnealedPruning(granularity='unit') will remove nothing: every masked "
                f"layer, {[layer.name for layer in self._layers]}, produces the model's "
                "output, whose units are kept (a subclassed model wrapped whole is one "
                "such layer). Wrap the hidden layers in `keras_anneal.Masked` apart, or "
                "prune weights (granularity='weight').",
                UserWarning,
                stacklevel=3,
            )
        self._unit_target = 0.0
        self._unit_groups = channel_dependencies.coupled_units(self.model, self._layers) if (
            self.granularity == "unit"
        ) else None
        self._permanent = [ops.convert_to_numpy(mask) for mask in self._masks]
        self._initial = [mask.copy() for mask in self._permanent]
        self._initial_biases = self._unit_bias_values()
        self._initial_weights = (
            self.model.get_weights() if self.budget is not None and self.restore_weights else None
        )
        self._check_reachable()
        self._record(self._permanent)
        self._warn_if_the_plan_began_before_this_fit()

    def _check_reachable(self):
        """Fails before any change if the final sparsity cannot be allocated."""
        sizes, capacities = allocation_module.layer_capacities(
            self._owners, self._permanent, self._unit_axes, self.keep_units_connected
        )
        self.allocation.check(sizes, self._final_sparsity, capacities)
        total, room = sum(sizes.values()), sum(capacities.values())
        target = masking.pruned_count(self._final_sparsity, total)
        if target > room and self.granularity == "weight":
            raise ValueError(
                f"Final sparsity {self._final_sparsity:g} prunes {target} of the "
                f"{total} prunable weights, but {total - room} must stay to keep every "
                "output unit connected. Lower the schedule's `final_sparsity` or pass "
                "keep_units_connected=False. Received: "
                f"final_sparsity={self._final_sparsity!r}"
            )

    def _record(self, masks):
        """Keeps the overall `(pruned, total)` and the sparsities."""
        self._pruned, self._total = masking.count_pruned(masks)
        self.sparsity = self._pruned / self._total
        per_layer = {}
        for owner, mask in zip(self._owners, masks):
            per_layer.setdefault(owner, []).append(mask)
        self.layer_sparsity = {}
        for owner, group in per_layer.items():
            pruned, total = masking.count_pruned(group)
            self.layer_sparsity[owner] = pruned / total


def _warn_of_layers_without_units(layers, granularity):
    unknown = layers_without_units(layers)
    if not unknown or granularity != "unit":
        return
    warnings.warn(
        f"AnnealedPruning removes no whole units from {unknown}: compaction does not "
        "follow a transposed convolution's filters, so its weights are pruned one by one.",
        UserWarning,
        stacklevel=3,
    )


def _warn_of_units_compact_keeps(layers, producing):
    """Names the hidden layers whose whole units go to zeros that `compact`
    keeps (depthwise and separable convolutions, recurrent layers, attention,
    layers of one's own): pruned alike, but no smaller."""
    skipped = set(layers_without_units(layers))  # Warned of apart.
    kept = {layer.name: type(layer.layer).__name__ for layer in layers
            if id(layer) not in producing and layer.name not in skipped
            and not channel_dependencies.writes_units(layer.layer)}
    if kept:
        warnings.warn(
            "AnnealedPruning(granularity='unit') prunes whole units of these layers, but "
            "`compact` does not delete them (it narrows Dense layers, plain convolutions, "
            f"both also under TimeDistributed, and Embeddings): {kept}. Their units, and "
            "those of the layers that feed them, become zeros, with no speedup.",
            UserWarning,
            stacklevel=4,
        )


def _warn_of_tensors_without_blocks(names, masks, n_of_m):
    n, m = n_of_m
    left = {name: tuple(mask.shape) for name, mask in zip(names, masks)
            if len(mask.shape) < 2 or mask.shape[-2] % m}
    if left:
        warnings.warn(
            f"AnnealedPruning(granularity='{n}:{m}') leaves these weights unpruned: their "
            f"input axis (the second-to-last) is not a multiple of {m}, so it has no blocks "
            f"of {m}: {left}. The overall sparsity is below {1 - n / m:g}; wrap only the "
            "layers that fit (`prune_model(model, layers=...)`).",
            UserWarning,
            stacklevel=3,
        )


def _check_granularity(value):
    """`(granularity, (n, m) or None)`: "weight", "unit" or an "N:M" pattern."""
    if value in ("weight", "unit"):
        return value, None
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) == 2 and all(part.isdigit() for part in parts):
        n, m = int(parts[0]), int(parts[1])
        if 0 < n < m:
            return value, (n, m)
    raise ValueError(
        "Argument `granularity` must be 'weight', 'unit' or an N:M pattern with "
        f"0 < N < M, e.g. '2:4'. Received: granularity={value!r}"
    )


def _check_regrowth_data(regrowth, data):
    """`(x, y)` as NumPy arrays of one length, given exactly when
    `Regrowth(grow="gradient")` is."""
    wants = regrowth is not None and regrowth.grow == "gradient"
    if data is None:
        if wants:
            raise ValueError(
                "Argument `regrowth_data` must be `(x, y)` training data: "
                "Regrowth(grow='gradient') takes the loss gradients on it. Received: "
                "regrowth_data=None"
            )
        return None
    if not wants:
        raise ValueError(
            "Argument `regrowth_data` is only used by `regrowth=Regrowth(grow='gradient')`. "
            f"Received: regrowth={regrowth!r} with regrowth_data given"
        )
    if not isinstance(data, (tuple, list)) or len(data) != 2 or data[1] is None:
        raise ValueError(
            "Argument `regrowth_data` must be a pair `(x, y)` of arrays (nested structures "
            f"of arrays for several inputs). Received: regrowth_data of type {type(data).__name__}"
        )
    try:
        data = keras.tree.map_structure(np.asarray, tuple(data))
    except Exception as error:  # A dataset or a generator: not indexable rows.
        raise ValueError(
            "Argument `regrowth_data` must hold arrays (NumPy or backend tensors), not a "
            f"dataset or generator. Received: {error}"
        ) from error
    lengths = {len(a) if a.ndim else 0 for a in keras.tree.flatten(data)}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            "Argument `regrowth_data` must hold arrays of one non-zero length. Received "
            f"lengths {sorted(lengths)}"
        )
    return data


def _check_instance(name, value, cls):
    if value is not None and not isinstance(value, cls):
        raise TypeError(
            f"Argument `{name}` must be a `keras_anneal.{cls.__name__}` or None. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    return value
