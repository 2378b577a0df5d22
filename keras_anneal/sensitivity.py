"""Sensitivity scan: how much each layer alone can lose.

Prunes each `Masked` layer on its own to a list of sparsities, with the
others untouched, and measures a metric on given data (the per-layer
analysis Distiller and NNI offer). The result is a table, a plot, and an
allocation (`SensitivityScan.allocation`) that keeps more of the layers
that cannot lose much.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_anneal import _validation
from keras_anneal import allocation as allocation_module
from keras_anneal import criteria
from keras_anneal import masking
from keras_anneal._backend import sync_backend_state
from keras_anneal._metrics import metric_direction
from keras_anneal.models import masked_layers


@dataclasses.dataclass
class SensitivityScan:
    """The metric after pruning each layer alone, per sparsity.

    Attributes:
        metric: the metric's name, as `model.evaluate` returns it.
        mode: `"max"` if larger is better, else `"min"`.
        baseline: the metric with the masks the model had.
        sparsities: the sparsities scanned.
        results: dict from layer name to the metric at each sparsity.

    Example:

    >>> scan = SensitivityScan("accuracy", "max", 0.98, [0.5, 0.9],
    ...                        {"masked_conv": [0.97, 0.80], "masked_dense": [0.98, 0.975]})
    >>> scan.tolerated(max_drop=0.01)  # The highest sparsity each layer takes.
    {'masked_conv': 0.0, 'masked_dense': 0.9}
    """

    metric: str
    mode: str
    baseline: float
    sparsities: list
    results: dict

    def drops(self, layer):
        """How much worse than the baseline `layer` is at each sparsity."""
        sign = 1.0 if self.mode == "max" else -1.0
        return [sign * (self.baseline - value) for value in self.results[layer]]

    def tolerated(self, max_drop):
        """Per layer, the highest scanned sparsity within `max_drop` (0.0 if none)."""
        max_drop = _validation.check_non_negative("max_drop", max_drop)
        tolerated = {}
        for layer in self.results:
            within = [s for s, d in zip(self.sparsities, self.drops(layer)) if d <= max_drop]
            tolerated[layer] = max(within, default=0.0)
        return tolerated

    def allocation(self, max_drop):
        """An allocation that keeps more weights where pruning hurts.

        Each layer's kept share is proportional to `n_l (1 - t_l)`, `t_l`
        its tolerated sparsity (`tolerated(max_drop)`), scaled to the
        overall target; pass it to `AnnealedPruning(allocation=...)` or
        `keras_anneal.prune`.
        """
        return allocation_module.Tolerance(self.tolerated(max_drop))

    def to_markdown(self):
        """The scan as a Markdown table: one row per layer, one column per sparsity."""
        header = f"| layer | {' | '.join(f'{s:.0%}' for s in self.sparsities)} |"
        rule = "|---|" + "---:|" * len(self.sparsities)
        rows = [
            f"| {layer} | {' | '.join(f'{value:.4f}' for value in values)} |"
            for layer, values in self.results.items()
        ]
        caption = f"{self.metric} after pruning one layer alone (baseline {self.baseline:.4f})"
        return "\n".join([caption, "", header, rule, *rows])

    def plot(self, ax=None):
        """One line per layer: the metric against sparsity (needs matplotlib).

        Returns:
            The matplotlib `Axes`.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        for layer, values in self.results.items():
            ax.plot(self.sparsities, values, marker="o", label=layer)
        ax.axhline(self.baseline, color="gray", linestyle="--", label="baseline")
        ax.set_xlabel("sparsity of the layer alone")
        ax.set_ylabel(self.metric)
        ax.legend(fontsize="small")
        return ax


def sensitivity_scan(
    model,
    x,
    y=None,
    sparsities=(0.5, 0.75, 0.9, 0.95),
    metric=None,
    criterion="magnitude",
    batch_size=256,
    keep_units_connected=True,
    mode="auto",
):
    """Prunes each `Masked` layer alone to each sparsity and measures `metric`.

    The other layers keep their masks; the model's masks are exactly as
    before when the scan returns (or raises). Weights already pruned stay
    pruned, so no sparsity may be below a layer's current one. With
    `keep_units_connected`,
    a sparsity that would disconnect a unit is capped at all but one weight
    per unit.

    Args:
        model: a compiled `keras.Model` holding `Masked` layers.
        x, y: evaluation data: a validation split, not the test set.
        sparsities: the sparsities to try, each in [0, 1).
        metric: a name among those `model.evaluate` returns. Defaults to
            the first compiled metric other than the loss, else the loss.
        criterion: which weights go in a layer. Defaults to `"magnitude"`.
        batch_size: for `model.evaluate`. Defaults to 256.
        keep_units_connected: as in `AnnealedPruning`. Defaults to True.
        mode: `"max"` if a larger `metric` is better, `"min"` if smaller, or
            `"auto"`: the direction the compiled metric declares (as
            `keras.callbacks.EarlyStopping` reads it; the loss goes down).
            Defaults to `"auto"`.

    Returns:
        A `SensitivityScan`.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)]))
    >>> model.compile(loss="mse")
    >>> x, y = np.random.rand(32, 4), np.random.rand(32, 1)
    >>> scan = sensitivity_scan(model, x, y, sparsities=[0.5, 0.8])
    >>> scan.metric, sorted(scan.results), len(scan.results["masked_dense"])
    ('loss', ['masked_dense', 'masked_dense_1'], 2)
    """
    criterion = criteria.get(criterion)
    if isinstance(sparsities, (str, bytes)) or not np.iterable(sparsities) or not len(sparsities):
        raise TypeError(
            "Argument `sparsities` must be a non-empty list of floats in [0, 1). "
            f"Received: sparsities={sparsities!r}"
        )
    sparsities = [_validation.check_sparsity("sparsities", s) for s in sparsities]
    if len(set(sparsities)) != len(sparsities):
        raise ValueError(
            "Argument `sparsities` must not repeat a sparsity (each is one column of the "
            f"scan). Received: sparsities={sparsities!r}"
        )
    mode = _validation.check_choice("mode", mode, ("auto", "min", "max"))
    batch_size = _validation.check_step("batch_size", batch_size, positive=True)
    keep_units_connected = _validation.check_bool("keep_units_connected", keep_units_connected)
    _validation.check_targets(x, y)
    _validation.check_calibration_inputs("x", x)
    layers = masked_layers(model)
    if not layers:
        raise ValueError(
            "Argument `model` has no `keras_anneal.Masked` layer to scan. Wrap its "
            f"layers first: `keras_anneal.prune_model(model)`. Received: model '{model.name}'"
        )
    if not getattr(model, "compiled", False):
        raise ValueError(
            "Argument `model` must be compiled (the scan calls `model.evaluate`). "
            f"Received: model '{model.name}' not compiled"
        )
    already = {layer.name: layer.sparsity for layer in layers if layer.sparsity > min(sparsities)}
    if already:  # Pruned weights stay pruned: a lower sparsity would be mislabelled.
        raise ValueError(
            "Argument `sparsities` must not go below a layer's current sparsity (the scan "
            f"only removes weights). Layers already sparser than {min(sparsities):g}: "
            f"{ {name: round(value, 4) for name, value in already.items()} }. "
            f"Received: sparsities={sparsities!r}"
        )

    def evaluate():
        return model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)

    sync_backend_state(model)
    first = evaluate()
    if metric is None:
        metric = next((name for name in first if name != "loss"), "loss")
    if metric not in first:
        raise ValueError(
            f"Argument `metric` must be one of {sorted(first)}, the names "
            f"`model.evaluate` returns. Received: metric={metric!r}"
        )
    if mode == "auto":
        mode = metric_direction(model, metric)
    saved = {layer.name: layer.get_masks() for layer in layers}
    results = {}
    try:
        for layer in layers:
            weights = [ops.convert_to_numpy(w) for w in layer.prunable_weights]
            values = []
            size = sum(w.size for w in weights)
            ceiling = 1.0 - 1e-12
            if keep_units_connected:  # At most all but one weight per unit.
                units = sum(masking.unit_count(w.shape, axes) for w, axes in zip(weights, layer.unit_axes))
                ceiling = (size - units) / size
            for sparsity in sparsities:
                masks = criterion.masks(
                    weights,
                    saved[layer.name],
                    min(sparsity, ceiling),
                    "uniform",
                    keep_units_connected=keep_units_connected,
                    unit_axes=layer.unit_axes,
                )
                layer.set_masks(masks)
                values.append(float(evaluate()[metric]))
            layer.set_masks(saved[layer.name])
            results[layer.name] = values
    finally:
        for layer in layers:
            layer.set_masks(saved[layer.name])
    return SensitivityScan(metric, mode, float(first[metric]), sparsities, results)
