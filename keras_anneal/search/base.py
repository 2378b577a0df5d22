"""The driver shared by every mask search.

A search sets candidate masks on the model's `Masked` layers and scores each
with one compiled evaluation (`test_on_batch`) on calibration data that is
converted to tensors once: no model copy, no rebuilt graph, no data pipeline
per candidate.
"""

import dataclasses
import difflib
import inspect
import math
import time
import warnings

import keras
import numpy as np
from keras import ops

from keras_anneal import _validation
from keras_anneal import masking
from keras_anneal._metrics import compiled_metrics
from keras_anneal.layers import Masked
from keras_anneal.models import masked_layers
from keras_anneal.search import costs
from keras_anneal.search.costs import Evaluation


@dataclasses.dataclass
class SearchResult:
    """What a mask search found; its masks are already set on the model.

    Attributes:
        masks: layer name -> list of 0/1 masks, as `Masked.get_masks()`.
        baseline: the `Evaluation` of the masks the search started from.
        final: the `Evaluation` of the masks found (after fine-tuning, if any),
            on the same calibration data.
        history: one dict per search step (per generation for the genetic
            algorithm): usable as rows of a table, e.g.
            `pandas.DataFrame(result.history)`.
        evaluations: candidates scored.
        seconds: wall time of the search (fine-tuning excluded).
    """

    masks: dict
    baseline: Evaluation
    final: Evaluation
    history: list
    evaluations: int
    seconds: float

    @property
    def loss(self):
        return self.final.loss

    @property
    def metrics(self):
        return self.final.metrics

    @property
    def sparsity(self):
        """Pruned / total over all masked weights (weighted by weight count)."""
        return self.final.sparsity

    @property
    def mean_layer_sparsity(self):
        """Mean of the per-mask sparsities (Dang 2025)."""
        return self.final.mean_layer_sparsity

    @property
    def evaluations_per_second(self):
        return self.evaluations / self.seconds if self.seconds > 0 else math.inf


@dataclasses.dataclass(frozen=True)
class MaskUnit:
    """One mask searched on its own: mask `index` of a `Masked` layer."""

    layer: Masked
    index: int

    @property
    def name(self):
        return f"{self.layer.name}/{self.layer.masks[self.index].name}"

    def get(self):
        return self.layer.get_masks()[self.index].astype(bool)

    def set(self, mask):
        masks = self.layer.get_masks()
        masks[self.index] = mask
        self.layer.set_masks(masks)

    def weights(self):
        return ops.convert_to_numpy(self.layer.prunable_weights[self.index])

    def anchors(self):
        """Boolean: the kept weight of largest `|w|` of each connected output
        unit (`masking.unit_anchors`), which the unit guard never prunes."""
        return masking.unit_anchors(np.abs(self.weights()), self.get(), self.layer.unit_axes[self.index])


def _num_samples(x):
    leaves = keras.tree.flatten(x)
    if not leaves:
        return 0
    return len(leaves[0])


def _slice(part, start, stop):
    return None if part is None else keras.tree.map_structure(lambda a: a[start:stop], part)


def _to_tensors(part):
    return None if part is None else keras.tree.map_structure(ops.convert_to_tensor, part)


def calibration_batches(x, y=None, sample_weight=None, batch_size=None):
    """The calibration data as a list of `(x, y, sample_weight, count)` tensors.

    Arrays are cut into batches of `batch_size` (all in one batch if `None`);
    an iterable of batches (a `tf.data.Dataset`, a generator) is read once.
    Everything is converted to backend tensors here, once.
    """
    if batch_size is not None:
        _validation.check_step("batch_size", batch_size, positive=True)
    if _validation.is_batch_iterable(x):
        if y is not None or sample_weight is not None:
            raise ValueError(
                "Argument `y` and `sample_weight` must be None when `x` is a dataset "
                f"of batches. Received: x={type(x).__name__}, y={type(y).__name__}"
            )
        raw = []
        for batch in x:
            batch = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
            raw.append((batch + (None, None))[:3])
    else:
        _validation.check_targets(x, y)
        _validation.check_calibration_inputs("x", x)
        count = _num_samples(x)
        step = batch_size or max(count, 1)
        raw = [
            tuple(_slice(part, start, start + step) for part in (x, y, sample_weight))
            for start in range(0, count, step)
        ]
    batches = [
        (_to_tensors(bx), _to_tensors(by), _to_tensors(bw), _num_samples(bx))
        for bx, by, bw in raw
        if _num_samples(bx)
    ]
    if not batches:
        raise ValueError(
            "Argument `x` must hold at least one calibration sample. Received: 0 samples"
        )
    return batches


class Scorer:
    """Scores the model as its masks stand, on fixed calibration batches.

    `focus(layers)` lets a search skip the work that cannot
    change: in a `keras.Sequential` model, the layers before the searched
    one are run once on the calibration data, and each candidate is scored
    by a model of the remaining layers (the same layer objects, compiled
    with the same loss and metrics). The first score after `focus` is
    checked against the whole model, which is used instead on any mismatch
    (e.g. a regularization loss in the skipped layers).
    """

    def __init__(self, model, batches):
        self.model = model
        self.batches = batches
        self.count = 0
        self._target, self._inputs = model, batches

    def focus(self, searched=()):
        """Scores from the first of the `searched` layers on, until the next `focus`."""
        self._target, self._inputs = self.model, self.batches
        layers = self.model.layers if isinstance(self.model, keras.Sequential) else []
        positions = [i for i, layer in enumerate(layers) if any(layer is s for s in searched)]
        index = min(positions) if len(positions) == len(searched) and positions else 0
        if index == 0:
            return
        try:
            config = keras.saving.deserialize_keras_object(self.model.get_compile_config())
            inputs = []
            for x, y, sample_weight, count in self.batches:
                for prefix_layer in layers[:index]:
                    x = prefix_layer(x, training=False)
                inputs.append((x, y, sample_weight, count))
            suffix = keras.Sequential([keras.Input(tuple(inputs[0][0].shape[1:])), *layers[index:]])
            suffix.compile(
                loss=config.get("loss"),
                metrics=config.get("metrics"),
                weighted_metrics=config.get("weighted_metrics"),
                loss_weights=config.get("loss_weights"),
            )
        except Exception:  # Whatever a model of the suffix cannot do, the whole model does.
            return
        whole = self._score(self.model, self.batches)
        part = self._score(suffix, inputs)
        if whole.keys() == part.keys() and all(
            math.isclose(whole[key], part[key], rel_tol=1e-4, abs_tol=1e-6) for key in whole
        ):
            self._target, self._inputs = suffix, inputs

    @staticmethod
    def _score(model, batches):
        totals, samples = {}, 0
        for x, y, sample_weight, count in batches:
            logs = model.test_on_batch(x, y, sample_weight, return_dict=True)
            for key, value in logs.items():
                totals[key] = totals.get(key, 0.0) + float(value) * count
            samples += count
        return {key: value / samples for key, value in totals.items()}

    def __call__(self):
        self.count += 1
        scores = self._score(self._target, self._inputs)
        if self.count == 1 and len(self.batches) > 1:
            self._warn_of_batch_means()
        return scores

    def _warn_of_batch_means(self):
        """Several batches give the mean of per-batch results, weighted by
        their sizes: exact for the loss and for means such as accuracy, not
        for AUC, precision or recall."""
        other = [m.name for m in compiled_metrics(self.model)
                 if not isinstance(m, keras.metrics.Mean)]
        if other:
            warnings.warn(
                f"The search scores {other} as the size-weighted mean of their values on "
                f"each of the {len(self.batches)} calibration batches, which is not their "
                "value on the whole calibration set. Pass `batch_size=None` (one batch) "
                "for their exact value.",
                UserWarning,
                stacklevel=3,
            )


def searched_layers(model, layers=None):
    """The `Masked` layers to search: all of the model's, or those `layers` names."""
    available = masked_layers(model)
    if not available:
        raise ValueError(
            "Argument `model` has no `Masked` layer to search. Wrap its layers with "
            "`keras_anneal.prune_model(model)` first."
        )
    if layers is None:
        chosen = available
    else:
        by_name = {layer.name: layer for layer in available}
        chosen = []
        for entry in layers:
            name = entry.name if isinstance(entry, keras.layers.Layer) else entry
            if name not in by_name:
                raise ValueError(
                    f"Argument `layers` must name `Masked` layers of the model: "
                    f"{sorted(by_name)}. Received: {entry!r}"
                )
            chosen.append(by_name[name])
        if not chosen:
            raise ValueError("Argument `layers` must name at least one layer. Received: []")
    return chosen


def _check_compiled(model):
    if not getattr(model, "compiled", False):
        raise ValueError(
            "Argument `model` must be compiled: the search scores masks with its "
            "loss. Call `model.compile(loss=..., metrics=[...])` first."
        )


def search_units(model, layers=None):
    """The masks to search, in order: all of the model's, or those of `layers`."""
    chosen = searched_layers(model, layers)
    for layer in chosen:
        if not layer.built:
            raise ValueError(
                f"Layer '{layer.name}' is not built yet. Build the model (call it on "
                "data or train it) before searching its masks."
            )
    return [MaskUnit(layer, index) for layer in chosen for index in range(len(layer.masks))]


class SearchState:
    """The masks of a running search, and the scoring of candidates."""

    def __init__(self, model, scorer, cost, rng, verbose):
        self.scorer = scorer
        self.cost = cost
        self.rng = rng
        self.verbose = verbose
        self.history = []
        all_units = search_units(model)
        self._pruned = {unit.name: int((~unit.get()).sum()) for unit in all_units}
        self._sizes = {unit.name: int(np.prod(unit.layer.masks[unit.index].shape)) for unit in all_units}
        self.baseline_loss = math.nan
        self.max_loss = math.inf
        self.non_finite = 0  # Candidates whose loss was NaN or inf.
        self.nan_costs = 0  # Candidates the `cost` function gave NaN.

    def evaluate(self, changes=None):
        """Sets `changes` (unit -> mask) and scores the model with them.

        The candidate stays set; `commit` makes it the current state.
        """
        changes = changes or {}
        for unit, mask in changes.items():
            unit.set(mask)
        pruned = dict(self._pruned)
        for unit, mask in changes.items():
            pruned[unit.name] = int(mask.size - np.count_nonzero(mask))
        logs = self.scorer()
        evaluation = Evaluation(
            loss=logs["loss"],
            metrics=logs,
            sparsity=sum(pruned.values()) / sum(self._sizes.values()),
            mean_layer_sparsity=float(np.mean([pruned[n] / self._sizes[n] for n in pruned])),
            baseline_loss=self.baseline_loss,
            max_loss=self.max_loss,
        )
        if not math.isfinite(evaluation.loss):
            # A candidate whose loss is NaN or inf is the worst possible one:
            # never accepted, never kept.
            self.non_finite += 1
            return evaluation, math.inf
        if math.isnan(self.baseline_loss):  # The baseline itself: no cost without it.
            return evaluation, math.nan
        cost = float(self.cost(evaluation))
        if math.isnan(cost):  # The `cost` function's own NaN: rejected alike, and counted.
            self.nan_costs += 1
            return evaluation, math.inf
        return evaluation, cost

    def commit(self, changes):
        for unit, mask in changes.items():
            unit.set(mask)
            self._pruned[unit.name] = int(mask.size - np.count_nonzero(mask))

    def record(self, evaluation, cost, **fields):
        self.history.append({
            **fields,
            "cost": cost,
            "loss": evaluation.loss,
            "max_loss": evaluation.max_loss,
            "sparsity": evaluation.sparsity,
            "mean_layer_sparsity": evaluation.mean_layer_sparsity,
            **{key: value for key, value in evaluation.metrics.items() if key != "loss"},
        })

    def progress(self, target, title):
        if not self.verbose:
            return None
        print(title)
        return keras.utils.Progbar(target, stateful_metrics=["cost", "loss", "sparsity"])


def _unknown_arguments(search_class, unknown):
    """The error for keyword arguments no `__init__` of `search_class` takes."""
    known = []
    for cls in search_class.__mro__:
        if "__init__" in vars(cls):
            known += [name for name, parameter in inspect.signature(cls.__init__).parameters.items()
                      if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD,
                                                                    parameter.VAR_POSITIONAL)]
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1) or [
            k for k in known if k.startswith(name) or name.startswith(k)][:1]
        if close:
            hints.append(f"'{name}' (did you mean '{close[0]}'?)")
        else:
            hints.append(f"'{name}'")
    return (
        f"{search_class.__name__} takes no argument {', '.join(hints)}. It takes: "
        f"{', '.join(dict.fromkeys(known))}. Received: "
        f"{', '.join(f'{k}={v!r}' for k, v in unknown.items())}"
    )


class MaskSearch:
    """Base of the searches: validates, runs `_search`, restores on failure.

    Subclasses validate their own parameters in `__init__` and implement
    `_search(state, units)`, which leaves the masks it found committed.

    Args:
        cost: `Evaluation -> float` to minimise; `None` for the search's default.
        layers: names (or instances) of the `Masked` layers to search, in the
            order to search them; `None` for all, in model order.
        batch_size: calibration samples per evaluation batch; `None` scores
            them all in one batch.
        fine_tune: `None`, or a dict of `model.fit` arguments (e.g.
            `dict(x=x_train, y=y_train, epochs=1)`) to train the kept weights
            after the search.
        seed: seed of the search's random numbers, for a reproducible run.
        keep_units_connected: never prune the last incoming weight of an
            output unit that has one when the search starts (each unit's
            weight of largest `|w|` stays), as `AnnealedPruning` does: the
            search judges the summed loss only, and could otherwise cut off
            a unit, or a head whose loss weighs little. Defaults to True.
        verbose: 0 for silence, 1 for a progress bar per searched mask.
    """

    default_cost = None

    def __init__(self, *, cost=None, layers=None, batch_size=None, fine_tune=None, seed=None,
                 keep_units_connected=True, verbose=1, **unknown):
        if unknown:
            raise TypeError(_unknown_arguments(type(self), unknown))
        self.cost = costs.check_cost(cost, type(self).default_cost)
        if isinstance(layers, (str, keras.layers.Layer)):
            layers = [layers]
        self.layers = None if layers is None else list(layers)
        if batch_size is not None:
            _validation.check_step("batch_size", batch_size, positive=True)
        self.batch_size = batch_size
        if fine_tune is not None and not isinstance(fine_tune, dict):
            raise TypeError(
                "Argument `fine_tune` must be None or a dict of `model.fit` arguments. "
                f"Received: fine_tune={fine_tune!r}"
            )
        self.fine_tune = fine_tune
        self.seed = None if seed is None else _validation.check_step("seed", seed)
        self.keep_units_connected = _validation.check_bool("keep_units_connected", keep_units_connected)
        self.verbose = verbose

    def _anchors(self, unit):
        """The weights of `unit` this search may not prune (the unit guard's)."""
        if self.keep_units_connected:
            return unit.anchors()
        return np.zeros(unit.get().shape, dtype=bool)

    def check(self, model, x, y=None, sample_weight=None):
        """Raises on what `run` would refuse, without searching: a model not
        compiled, `layers` it does not hold, calibration data that is empty or
        inconsistent (a dataset or generator is left unread)."""
        _check_compiled(model)
        searched_layers(model, self.layers)
        if not _validation.is_batch_iterable(x):
            calibration_batches(x, y, sample_weight, self.batch_size)

    def _search(self, state, units):
        raise NotImplementedError

    def _check_units(self, units):
        """Checks parameters that depend on the model, before any change."""

    def run(self, model, x, y=None, sample_weight=None):
        """Searches the masks of `model` on the calibration data `x, y`.

        Use held-out data (a validation split), never the test set: the masks
        are chosen to do well on exactly these samples.

        Returns:
            A `SearchResult`; the masks found are set on the model.
        """
        _check_compiled(model)  # The rest of `check` is done on the way, once.
        units = search_units(model, self.layers)
        self._check_units(units)
        batches = calibration_batches(x, y, sample_weight, self.batch_size)
        layers = {unit.layer.name: unit.layer for unit in units}
        initial = {name: layer.get_masks() for name, layer in layers.items()}
        state = SearchState(model, Scorer(model, batches), self.cost, np.random.default_rng(self.seed), self.verbose)
        start = time.perf_counter()
        try:
            baseline, _ = state.evaluate()
            if not math.isfinite(baseline.loss):
                raise FloatingPointError(
                    f"The loss of model '{model.name}' on the calibration data is "
                    f"{baseline.loss} before any mask changes: a search cannot rank masks "
                    "from it. Check the data (NaN inputs?) and the weights (a diverged "
                    f"training?). Received: calibration loss={baseline.loss}"
                )
            state.baseline_loss = baseline.loss
            baseline = dataclasses.replace(baseline, baseline_loss=baseline.loss)
            self._search(state, units)
            seconds = time.perf_counter() - start
            if state.non_finite:
                warnings.warn(
                    f"{state.non_finite} candidate masks gave a NaN or infinite loss on the "
                    "calibration data; they were rejected.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if state.nan_costs:
                warnings.warn(
                    f"The search's `cost` returned NaN for {state.nan_costs} candidate masks "
                    "(of finite loss); they were rejected. Check the `cost` function.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if self.fine_tune is not None:
                model.fit(**{"verbose": self.verbose, **self.fine_tune})
            state.max_loss = math.inf
            state.scorer.focus()
            final, _ = state.evaluate()
        except BaseException:
            for name, masks in initial.items():
                layers[name].set_masks(masks)
            raise
        return SearchResult(
            masks={layer.name: layer.get_masks() for layer in masked_layers(model)},
            baseline=baseline,
            final=final,
            history=state.history,
            evaluations=state.scorer.count,
            seconds=seconds,
        )


class LayerwiseSearch(MaskSearch):
    """Searches one mask at a time, under a loss cap that rises from mask to mask.

    Mask i of the searched masks is searched under the cap
    `loss_cap(i, sizes, L_base)`, `sizes` being their weight counts;
    the best candidate found replaces the mask only if its loss is within
    that cap, otherwise the mask stays as it was. Subclasses implement
    `_search_mask(state, unit)` -> `(best_mask, best_evaluation)`.
    """

    default_cost = staticmethod(costs.loss_sparsity_cost)

    def __init__(self, *, loss_cap=costs.DEFAULT_LOSS_INCREASE, patience=None, **kwargs):
        super().__init__(**kwargs)
        self.loss_cap = costs.get_loss_cap(loss_cap)
        if patience is not None:
            _validation.check_step("patience", patience, positive=True)
        self.patience = patience

    def _stalled(self, steps_since_best):
        """Whether a mask's search has gone `patience` steps without a better mask."""
        return self.patience is not None and steps_since_best >= self.patience

    def _search_mask(self, state, unit):
        raise NotImplementedError

    def _search(self, state, units):
        sizes = [unit.get().size for unit in units]
        for position, unit in enumerate(units):
            state.max_loss = float(self.loss_cap(position, sizes, state.baseline_loss))
            start = unit.get()
            state.scorer.focus([unit.layer])
            mask, evaluation = self._search_mask(state, unit)
            state.commit({unit: mask if evaluation.within_cap else start})
