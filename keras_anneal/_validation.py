"""Argument checks shared by every public entry point.

Each check raises `TypeError` for a wrong type and `ValueError` for a wrong
value, naming the argument and the value received, in the Keras style:
"Argument `final_sparsity` must be in [0, 1). Received: final_sparsity=1.2".
"""

import math
import numbers

import keras
import numpy as np


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_sparsity(name, value):
    """A sparsity is a real number in [0, 1): a layer always keeps a weight."""
    if not _is_real(value):
        raise TypeError(
            f"Argument `{name}` must be a float in [0, 1). "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"Argument `{name}` must be in [0, 1). Received: {name}={value!r}"
        )
    return float(value)


def check_rate(name, value):
    """A rate in [0, 1), as Dropout's."""
    return check_sparsity(name, value)


def check_fraction(name, value, *, include_one=True):
    """A fraction in (0, 1], or in (0, 1) when `include_one=False`."""
    if not _is_real(value):
        raise TypeError(
            f"Argument `{name}` must be a float. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if not (0.0 < value < 1.0 or (include_one and value == 1.0)):
        interval = "(0, 1]" if include_one else "(0, 1)"
        raise ValueError(
            f"Argument `{name}` must be in {interval}. Received: {name}={value!r}"
        )
    return float(value)


def check_step(name, value, *, positive=False):
    """An optimizer step: a non-negative (or, if `positive`, positive) int."""
    if not _is_int(value):
        raise TypeError(
            f"Argument `{name}` must be an int. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if positive and value <= 0:
        raise ValueError(
            f"Argument `{name}` must be a positive int. Received: {name}={value!r}"
        )
    if value < 0:
        raise ValueError(
            f"Argument `{name}` must be a non-negative int. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_real(name, value):
    """A finite real number."""
    if not _is_real(value):
        raise TypeError(
            f"Argument `{name}` must be a float. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be finite. Received: {name}={value!r}")
    return float(value)


def check_non_negative(name, value):
    """A finite non-negative real number."""
    if check_real(name, value) < 0:
        raise ValueError(
            f"Argument `{name}` must be >= 0. Received: {name}={value!r}"
        )
    return float(value)


def check_positive(name, value):
    """A finite positive real number."""
    if check_non_negative(name, value) == 0:
        raise ValueError(
            f"Argument `{name}` must be > 0. Received: {name}={value!r}"
        )
    return float(value)


def check_bool(name, value):
    """A bool (not merely truthy: `"False"` is refused)."""
    if not isinstance(value, bool):
        raise TypeError(
            f"Argument `{name}` must be a bool. Received: {name}={value!r} "
            f"of type {type(value).__name__}"
        )
    return value


def check_choice(name, value, choices):
    """One of a fixed set of strings."""
    if value not in choices:
        expected = ", ".join(repr(choice) for choice in choices)
        raise ValueError(
            f"Argument `{name}` must be one of {expected}. Received: {name}={value!r}"
        )
    return value


def check_probability(name, value):
    """A probability or rate in [0, 1]."""
    if not _is_real(value):
        raise TypeError(
            f"Argument `{name}` must be a float in [0, 1]. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"Argument `{name}` must be in [0, 1]. Received: {name}={value!r}"
        )
    return float(value)


def check_drop_connect_groups(value, drop_connect):
    """DropConnect draws per batch: a positive int, above 1 only with noise.

    `drop_connect` is a rate or a dict of rates (noise if any is above 0).
    """
    value = check_step("drop_connect_groups", value, positive=True)
    noisy = any(drop_connect.values()) if isinstance(drop_connect, dict) else drop_connect
    if value > 1 and not noisy:
        raise ValueError(
            "Argument `drop_connect_groups` above 1 needs a `drop_connect` rate above 0 "
            f"(there is no noise to draw). Received: drop_connect_groups={value}, "
            f"drop_connect={drop_connect!r}"
        )
    return value


def is_batch_iterable(x):
    """A `tf.data.Dataset`, a generator or another iterable of `(x, y)` batches."""
    return (hasattr(x, "__iter__") and not isinstance(x, (np.ndarray, list, tuple, dict))
            and not hasattr(x, "shape"))


def check_targets(x, y):
    """Array inputs need their targets: the loss and metrics are computed on them."""
    if y is None and not is_batch_iterable(x):
        raise ValueError(
            "Argument `y` is required with array inputs `x`: the targets the loss "
            "and metrics are computed on (or pass a dataset of `(x, y)` batches as "
            f"`x`). Received: x of type {type(x).__name__}, y=None"
        )
    counts = {_sample_count(x), _sample_count(y)} - {None}
    if y is not None and len(counts) > 1:
        raise ValueError(
            "Arguments `x` and `y` must hold as many samples. Received: "
            f"{_sample_count(x)} inputs and {_sample_count(y)} targets"
        )


def _sample_count(data):
    """The first axis of an array (or of the first array of a structure); None otherwise."""
    leaves = keras.tree.flatten(data) if data is not None else []
    shape = getattr(leaves[0], "shape", None) if leaves else None
    return int(shape[0]) if shape is not None and len(shape) and shape[0] is not None else None


def check_calibration_inputs(name, x):
    """Array inputs (one array, or a list or dict of them) hold at least one
    sample, all finite: masks are never chosen from NaN. Datasets and
    generators are read later, batch by batch, and pass as they are.

    >>> check_calibration_inputs("x", np.zeros((0, 3)))
    Traceback (most recent call last):
    ...
    ValueError: Argument `x` must hold at least one calibration sample. Received: 0 samples
    """
    if is_batch_iterable(x):
        return
    for leaf in keras.tree.flatten(x):
        values = np.asarray(leaf)
        if values.ndim and not len(values):
            raise ValueError(
                f"Argument `{name}` must hold at least one calibration sample. "
                "Received: 0 samples"
            )
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
            raise ValueError(
                f"Argument `{name}` must hold finite values: masks are never chosen from "
                f"NaN or inf. Received: {name} with {int(np.sum(~np.isfinite(values)))} "
                "non-finite values"
            )
