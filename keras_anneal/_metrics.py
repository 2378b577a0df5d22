"""Which way a logged metric improves, the way Keras' own monitor callbacks tell."""


def metric_direction(model, name):
    """`"max"` or `"min"`: which way the metric `name` of `model` improves.

    As `keras.callbacks.EarlyStopping(mode="auto")` decides: the loss goes
    down, and a compiled metric says with its direction (`"up"` for accuracy
    or AUC, `"down"` for MAE or MSE). A `val_` prefix is ignored. For a name
    the model's metrics do not know, `"min"` if it contains "loss" or
    "error", else `"max"`.
    """
    base = name.removeprefix("val_")
    if base == "loss" or base.endswith("_loss"):
        return "min"
    for metric in compiled_metrics(model):
        if metric.name == base and getattr(metric, "_direction", None) in ("up", "down"):
            return "max" if metric._direction == "up" else "min"
    return direction_from_name(base)


def direction_from_name(name):
    """`"min"` for a name with "loss" or "error" in it, else `"max"`."""
    return "min" if "loss" in name or "error" in name else "max"


def compiled_metrics(model):
    """The model's metric objects, those `compile(metrics=...)` made included
    (they exist once the model has been trained or evaluated)."""
    found = []
    for metric in getattr(model, "metrics", []):
        inner = getattr(metric, "metrics", None)  # CompileMetrics and MetricsList hold others.
        found.extend(inner if isinstance(inner, (list, tuple)) else [metric])
    return found
