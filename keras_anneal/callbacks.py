"""Callbacks that prune a model while it trains."""

import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_anneal import _validation
from keras_anneal import criteria
from keras_anneal import masking
from keras_anneal import reversible
from keras_anneal import schedules as schedules_module
from keras_anneal import search
from keras_anneal._backend import sync_backend_state
from keras_anneal.models import masked_layers


class AnnealedPruning(keras.callbacks.Callback):
    """Prunes `Masked` layers during `fit`, following an annealing schedule.

    Before the first step and then every `frequency` optimizer updates, the
    callback asks the schedule for the target sparsity `s` at the current
    step and keeps, in each prunable weight tensor (`scope="layer"`) or in all
    of them together (`scope="global"`, as FSA ranks all variables), the
    weights of largest criterion score (`|w|` by default), so that exactly
    `floor(s * n)` of `n` weights are pruned (see `keras_anneal.masking`).
    Pruning is cumulative: a pruned weight never comes back, unless
    `temporary` or `regrowth` say otherwise.

    The step is the optimizer's iteration count, so a training resumed from
    a checkpoint (e.g. with `keras.callbacks.BackupAndRestore`) continues the
    schedule where it stopped. For the same reason, a schedule's
    `end_fraction` is a fraction of `epochs * steps_per_epoch` of this `fit`
    counted from the optimizer's step 0: a second `fit` on an optimizer that
    has already stepped continues the plan rather than starting it again. The
    overall sparsity is written to the epoch logs under `"sparsity"`, and
    each layer's under `"sparsity/<layer name>"`, where `History`,
    `CSVLogger` and `TensorBoard` placed after this callback see them.

    Masks are never computed from a diverged run: if a prunable weight holds
    NaN or inf at an update, or the loss is not finite at an epoch's end
    (checked at every epoch end), the callback raises a `FloatingPointError` naming the
    weight (or the loss), or, with `on_nonfinite="skip"`, skips the update
    with a warning.

    Args:
        schedule: a `keras_anneal.schedules.PruningSchedule`.
        frequency: optimizer updates between mask updates, > 0.
            Defaults to 50.
        scope: `"layer"` or `"global"`. Defaults to `"layer"`.
        criterion: which weights go: a `keras_anneal.criteria.PruningCriterion`,
            `"magnitude"`, `"random"` or `"largest"`. Defaults to `"magnitude"`.
        temporary: a `keras_anneal.TemporaryRemoval` (noise injection:
            kept weights removed for a while, then returned), or `None`.
            Defaults to `None`.
        regrowth: a `keras_anneal.Regrowth` (drop-and-regrow at the final
            sparsity, SET), or `None`. Defaults to `None`.
        on_nonfinite: `"raise"` or `"skip"`. Defaults to `"raise"`.

    Raises:
        TypeError: if `schedule` is not a pruning schedule, or `temporary`
            or `regrowth` is of the wrong type.
        ValueError: on a bad `frequency`, `scope`, `criterion` or
            `on_nonfinite`; at the start of `fit`, if the model has no
            `Masked` layer.
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
        scope="layer",
        criterion="magnitude",
        temporary=None,
        regrowth=None,
        on_nonfinite="raise",
    ):
        super().__init__()
        self.schedule = schedules_module.get(schedule)
        self.frequency = _validation.check_step("frequency", frequency, positive=True)
        self.scope = _validation.check_choice("scope", scope, ("layer", "global"))
        self.criterion = criteria.get(criterion)
        if self.criterion.needs_data:
            raise ValueError(
                "Argument `criterion` must work from the weights alone during training; "
                f"use it with `keras_anneal.prune(..., data=...)` after training. "
                f"Received: criterion={self.criterion!r}"
            )
        self.temporary = _check_instance("temporary", temporary, reversible.TemporaryRemoval)
        self.regrowth = _check_instance("regrowth", regrowth, reversible.Regrowth)
        if self.regrowth is not None and self.scope != "layer":
            raise ValueError(
                "Argument `regrowth` works per weight tensor: it needs scope='layer'. "
                f"Received: scope={scope!r}"
            )
        self.on_nonfinite = _validation.check_choice(
            "on_nonfinite", on_nonfinite, ("raise", "skip")
        )
        self.sparsity = 0.0
        self.layer_sparsity = {}

    def on_train_begin(self, logs=None):
        layers = masked_layers(self.model)
        if not layers:
            raise ValueError(
                "AnnealedPruning found no `keras_anneal.Masked` layer in the model "
                f"'{self.model.name}'. Wrap its layers first: "
                "`model = keras_anneal.prune_model(model)`."
            )
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        self._total_steps = steps * epochs if steps and epochs else None
        self.schedule(0, self._total_steps)  # Fails now, not mid-training, on a bad end.
        if self._total_steps is None and (self.temporary or self.regrowth):
            raise ValueError(
                "`temporary` and `regrowth` end at a fraction of the training, so "
                "`fit` must know its length: pass `steps_per_epoch` (or data of known "
                "length). Received: steps_per_epoch=None"
            )
        self._layers = layers
        # Gathered at the first update, once every `on_train_begin` has run
        # (`BackupAndRestore` restores the masks there) and the first step
        # has built the layers of subclassed models.
        self._masks = self._weights = self._permanent = None
        self._last_update_step = None
        self._epoch_begin_step = 0
        self._final_step = None  # First update at which the plan is complete.
        self._temporary_in_masks = False
        if self.temporary is not None:
            self.temporary.reset()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_begin_step = self._optimizer_step()

    def on_train_batch_begin(self, batch, logs=None):
        # Batch begin, not batch end: overriding `on_train_batch_end` would
        # turn off Keras' asynchronous dispatch of batch logs.
        self._maybe_update(self._epoch_begin_step + batch)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            message = (
                f"AnnealedPruning: the training loss is {loss} at the end of epoch "
                f"{epoch + 1}; masks are never computed from a diverged run. Lower the "
                "learning rate, clip the gradients, or pass on_nonfinite='skip'."
            )
            if self.on_nonfinite == "raise":
                self.on_train_end()  # Leave the model on its permanent masks.
                raise FloatingPointError(message)
            warnings.warn(message + " This update is skipped.", RuntimeWarning, stacklevel=2)
        else:
            self._maybe_update(self._optimizer_step())
        if self._masks is None:
            self._gather()
        if logs is not None:
            logs["sparsity"] = self.sparsity
            for name, value in self.layer_sparsity.items():
                logs[f"sparsity/{name}"] = value

    def on_train_end(self, logs=None):
        if self._temporary_in_masks:  # Training ends on the permanent masks.
            sync_backend_state(self.model)
            for variable, value in zip(self._masks, self._permanent):
                variable.assign(value)
            self._temporary_in_masks = False

    def _optimizer_step(self):
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def _maybe_update(self, step):
        due = step - step % self.frequency
        if due == self._last_update_step:
            return
        if self._masks is None:
            if not all(layer.built for layer in self._layers):
                return  # Built by the first step; the next update is due after it.
            self._gather()
        self._last_update_step = due
        target = self.schedule(due, self._total_steps)
        prune = any(
            masking.pruned_count(target, total) > pruned
            for pruned, total in self._group_counts
        )
        if self.regrowth is not None and not prune and self._final_step is None:
            if target >= self.schedule(self._total_steps, self._total_steps):
                self._final_step = due
        regrow = self.regrowth is not None and self._final_step is not None and (
            self.regrowth.drop_fraction(due, self._final_step, self._total_steps) > 0
        )
        noisy = self.temporary is not None and (
            self.temporary.active(due, self._total_steps) or self._temporary_in_masks
        )
        if not (prune or regrow or noisy):
            return  # Nothing to change: skip reading the weights.
        sync_backend_state(self.model)
        weights = [ops.convert_to_numpy(weight) for weight in self._weights]
        if not self._weights_are_finite(weights, due):
            return
        permanent = self._permanent
        if prune:
            permanent = self.criterion.masks(weights, permanent, target, self.scope, step=due)
        regrown = []
        if regrow:
            permanent, regrown = self.regrowth.masks(
                weights, permanent, self.criterion, due, self._final_step, self._total_steps
            )
        written = permanent
        if noisy:
            written = self.temporary.masks(weights, permanent, due, self._total_steps)
        # Everything is computed: now write weights and masks together.
        for variable, value, grown in zip(self._weights, weights, regrown):
            if grown.any():
                variable.assign(np.where(grown, 0, value).astype(value.dtype))
        for variable, value in zip(self._masks, written):
            variable.assign(value)
        self._permanent = permanent
        if noisy:
            self._temporary_in_masks = self.temporary.active(due, self._total_steps)
        self._record(permanent)

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
                    self.on_train_end()  # Leave the model on its permanent masks.
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
        self._permanent = [ops.convert_to_numpy(mask) for mask in self._masks]
        self._record(self._permanent)

    def _record(self, masks):
        """Keeps `(pruned, total)` per ranking group, and the sparsities."""
        groups = [masks] if self.scope == "global" else [[mask] for mask in masks]
        self._group_counts = [masking.count_pruned(group) for group in groups]
        pruned, total = masking.count_pruned(masks)
        self.sparsity = pruned / total
        per_layer = {}
        for owner, mask in zip(self._owners, masks):
            per_layer.setdefault(owner, []).append(mask)
        self.layer_sparsity = {}
        for owner, group in per_layer.items():
            pruned, total = masking.count_pruned(group)
            self.layer_sparsity[owner] = pruned / total


def _check_instance(name, value, cls):
    if value is not None and not isinstance(value, cls):
        raise TypeError(
            f"Argument `{name}` must be a `keras_anneal.{cls.__name__}` or None. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    return value


class _SearchAtTrainEnd(keras.callbacks.Callback):
    """Runs a mask search on the given calibration data when `fit` ends."""

    def __init__(self, mask_search, x, y=None, sample_weight=None):
        super().__init__()
        self.search = mask_search
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.result = None

    def on_train_end(self, logs=None):
        sync_backend_state(self.model)
        self.result = self.search.run(self.model, self.x, self.y, self.sample_weight)


class SimulatedAnnealingPruning(_SearchAtTrainEnd):
    """Prunes further by simulated annealing when `fit` ends.

    At the end of training, runs `keras_anneal.search.SimulatedAnnealing`
    on the calibration data `x, y` (a validation split, not the test set),
    starting from the masks training left. The masks found stay on the
    model; the `SearchResult` is in `self.result`.

    Args:
        x, y, sample_weight: the calibration data.
        **kwargs: arguments of `keras_anneal.search.SimulatedAnnealing`,
            checked here, before training starts.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)]))
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    >>> search = SimulatedAnnealingPruning(x[:16], y[:16], iterations=10, seed=0, verbose=0)
    >>> _ = model.fit(x, y, epochs=1, verbose=0, callbacks=[search])
    >>> search.result.sparsity == keras_anneal.sparsity_report(model).sparsity > 0
    True
    """

    def __init__(self, x, y=None, sample_weight=None, **kwargs):
        super().__init__(search.SimulatedAnnealing(**kwargs), x, y, sample_weight)


class GeneticPruning(_SearchAtTrainEnd):
    """Prunes further by a genetic algorithm when `fit` ends.

    At the end of training, runs `keras_anneal.search.GeneticAlgorithm`
    on the calibration data `x, y` (a validation split, not the test set),
    starting from the masks training left. The masks found stay on the
    model; the `SearchResult` is in `self.result`.

    Args:
        x, y, sample_weight: the calibration data.
        **kwargs: arguments of `keras_anneal.search.GeneticAlgorithm`,
            checked here, before training starts.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)]))
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    >>> search = GeneticPruning(x[:16], y[:16], generations=2, population_size=4,
    ...                         tournament_size=2, seed=0, verbose=0)
    >>> _ = model.fit(x, y, epochs=1, verbose=0, callbacks=[search])
    >>> search.result.sparsity == keras_anneal.sparsity_report(model).sparsity > 0
    True
    """

    def __init__(self, x, y=None, sample_weight=None, **kwargs):
        super().__init__(search.GeneticAlgorithm(**kwargs), x, y, sample_weight)
