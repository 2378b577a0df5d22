"""Callbacks that prune a model while it trains."""

import keras
from keras import ops

from keras_anneal import _validation
from keras_anneal import masking
from keras_anneal import schedules as schedules_module
from keras_anneal import search
from keras_anneal.models import masked_layers


def _sync_backend_state(model):
    """Makes the model's variables current before a callback reads or writes them.

    During `fit` the JAX trainer keeps the state outside the variables, and
    only writes it back at the end of an epoch or when asked to.
    """
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()


class AnnealedPruning(keras.callbacks.Callback):
    """Prunes `Masked` layers during `fit`, following an annealing schedule.

    Before the first step and then every `frequency` optimizer updates, the
    callback asks the schedule for the target sparsity `s` at the current
    step and keeps, in each prunable weight tensor (`scope="layer"`) or in all
    of them together (`scope="global"`, as FSA ranks all variables), the
    weights of largest magnitude `|w|`, so that exactly `floor(s * n)` of `n`
    weights are pruned (see `keras_anneal.masking`). Pruning is cumulative: a
    pruned weight never comes back.

    The step is the optimizer's iteration count, so a training resumed from
    a checkpoint (e.g. with `keras.callbacks.BackupAndRestore`) continues the
    schedule where it stopped. For the same reason, a schedule's
    `end_fraction` is a fraction of `epochs * steps_per_epoch` of this `fit`
    counted from the optimizer's step 0: a second `fit` on an optimizer that
    has already stepped continues the plan rather than starting it again. The overall sparsity is written to the epoch
    logs under `"sparsity"`, where `History`, `CSVLogger` and `TensorBoard`
    placed after this callback see it.

    Args:
        schedule: a `keras_anneal.schedules.PruningSchedule`.
        frequency: optimizer updates between mask updates, > 0.
            Defaults to 50.
        scope: `"layer"` or `"global"`. Defaults to `"layer"`.

    Raises:
        TypeError: if `schedule` is not a pruning schedule.
        ValueError: on a bad `frequency` or `scope`; at the start of `fit`,
            if the model has no `Masked` layer.

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

    def __init__(self, schedule, frequency=50, scope="layer"):
        super().__init__()
        self.schedule = schedules_module.get(schedule)
        self.frequency = _validation.check_step("frequency", frequency, positive=True)
        self.scope = _validation.check_choice("scope", scope, ("layer", "global"))
        self.sparsity = 0.0

    def on_train_begin(self, logs=None):
        layers = masked_layers(self.model)
        if not layers:
            raise ValueError(
                "AnnealedPruning found no `keras_anneal.Masked` layer in the model "
                f"'{self.model.name}'. Wrap its layers first: "
                "`model = keras_anneal.prune_model(model)` (or, in a subclassed "
                "model, `keras_anneal.Masked(layer)`)."
            )
        steps, epochs = self.params.get("steps"), self.params.get("epochs")
        self._total_steps = steps * epochs if steps and epochs else None
        self.schedule(0, self._total_steps)  # Fails now, not mid-training, on a bad end.
        self._layers = layers
        # Gathered at the first update, once every `on_train_begin` has run
        # (`BackupAndRestore` restores the masks there) and the first step
        # has built the layers of subclassed models.
        self._masks = self._weights = None
        self._last_update_step = None
        self._epoch_begin_step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_begin_step = self._optimizer_step()

    def on_train_batch_begin(self, batch, logs=None):
        # Batch begin, not batch end: overriding `on_train_batch_end` would
        # turn off Keras' asynchronous dispatch of batch logs.
        self._maybe_update(self._epoch_begin_step + batch)

    def on_epoch_end(self, epoch, logs=None):
        self._maybe_update(self._optimizer_step())
        if self._masks is None:
            self._gather()
        if logs is not None:
            logs["sparsity"] = self.sparsity

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
        if all(
            masking.pruned_count(target, total) <= pruned
            for pruned, total in self._group_counts
        ):
            return  # Nothing more to prune: skip reading the weights.
        _sync_backend_state(self.model)
        weights = [ops.convert_to_numpy(weight) for weight in self._weights]
        masks = [ops.convert_to_numpy(mask) for mask in self._masks]
        new_masks = masking.magnitude_masks(weights, masks, target, self.scope)
        for variable, value in zip(self._masks, new_masks):
            variable.assign(value)
        self._record(new_masks)

    def _gather(self):
        """Collects the mask and weight variables, and the current counts."""
        _sync_backend_state(self.model)
        self._masks = [mask for layer in self._layers for mask in layer.masks]
        self._weights = [w for layer in self._layers for w in layer.prunable_weights]
        self._record([ops.convert_to_numpy(mask) for mask in self._masks])

    def _record(self, masks):
        """Keeps `(pruned, total)` per ranking group, and the overall sparsity."""
        groups = [masks] if self.scope == "global" else [[mask] for mask in masks]
        self._group_counts = [masking.count_pruned(group) for group in groups]
        pruned, total = masking.count_pruned(masks)
        self.sparsity = pruned / total


class _SearchAtTrainEnd(keras.callbacks.Callback):
    """Runs a mask search on the given calibration data when `fit` ends."""

    def __init__(self, mask_search, x, y=None, sample_weight=None):
        super().__init__()
        self.search = mask_search
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.result = None

    def on_train_end(self, logs=None):
        _sync_backend_state(self.model)
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
