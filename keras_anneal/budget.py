"""The accuracy budget of `AnnealedPruning`: how much worse a metric may get.

Pure bookkeeping, no Keras: the callback reports each epoch's value of the
monitored metric, the budget says whether it is within `max_drop` of the
reference (given, or the best value seen so far), and the callback restores
and holds the masks when it is not.
"""

import dataclasses

from keras_anneal import _validation
from keras_anneal._metrics import direction_from_name


class AccuracyBudget:
    """The largest accepted drop of `monitor` below (or above) a reference.

    Args:
        monitor: the logged metric, e.g. `"val_accuracy"`.
        max_drop: the largest accepted drop, >= 0 (0.001: 0.1 point of accuracy).
        reference: the value the drop is measured from, or `None` for the
            best value seen since the last `reset`.
        mode: `"max"` (larger is better), `"min"`, or `"auto"`: the
            direction the model's metric declares once `settle` is told it
            (`AnnealedPruning` does, as `EarlyStopping` reads it), until then
            `"min"` for names with "loss" or "error", else `"max"`.

    Example:

    >>> budget = AccuracyBudget("val_accuracy", max_drop=0.01)
    >>> budget.judge(0.95), budget.judge(0.97), budget.judge(0.955)
    ((True, 0.95), (True, 0.97), (False, 0.97))
    """

    def __init__(self, monitor="val_accuracy", max_drop=0.001, reference=None, mode="auto"):
        if not isinstance(monitor, str) or not monitor:
            raise (ValueError if isinstance(monitor, str) else TypeError)(
                "Argument `monitor` must be the name of a logged metric, e.g. "
                f"'val_accuracy'. Received: monitor={monitor!r}"
            )
        self.monitor = monitor
        self.max_drop = _validation.check_non_negative("max_drop", max_drop)
        self.reference = (
            None if reference is None else _validation.check_real("reference", reference)
        )
        mode = _validation.check_choice("mode", mode, ("auto", "min", "max"))
        self._auto = mode == "auto"
        self.mode = direction_from_name(monitor) if self._auto else mode
        self.reset()

    def settle(self, direction):
        """With `mode="auto"`, takes `direction` ("max" or "min") from the metric itself."""
        if self._auto:
            self.mode = direction

    def reset(self):
        """Forgets the best value (at the start of `fit`)."""
        self._best = None

    def judge(self, value):
        """`(within, reference)`: whether `value` is within budget, and against what."""
        sign = 1.0 if self.mode == "max" else -1.0
        if self._best is None or sign * (value - self._best) > 0:
            self._best = value
        reference = self._best if self.reference is None else self.reference
        return sign * (reference - value) <= self.max_drop + 1e-12, reference


@dataclasses.dataclass(frozen=True)
class BudgetStop:
    """Why and where `AnnealedPruning`'s accuracy budget held the sparsity.

    Attributes:
        epoch: the epoch (0-based) whose metric left the budget.
        restored_epoch: the epoch (0-based) at whose end the masks that came
            back were taken (None: those `fit` started with).
        sparsity: the overall sparsity held for the rest of `fit`.
        monitor, value, reference, max_drop: the metric, its value at
            `epoch`, the value the drop is measured from, and the budget.

    Its text counts epochs from 1, as Keras' progress logs do.

    Example:

    >>> print(BudgetStop(epoch=4, restored_epoch=3, sparsity=0.72, monitor="val_accuracy",
    ...                  value=0.95, reference=0.97, max_drop=0.01))  # doctest: +NORMALIZE_WHITESPACE
    val_accuracy = 0.9500 is 0.0200 from the reference 0.9700, beyond the budget of
    0.01: the masks at the end of epoch 4 are back and the sparsity is held at
    0.7200 for the rest of training.
    """

    epoch: int
    restored_epoch: int
    sparsity: float
    monitor: str
    value: float
    reference: float
    max_drop: float

    def __str__(self):
        restored = (
            "the masks fit started with"
            if self.restored_epoch is None
            else f"the masks at the end of epoch {self.restored_epoch + 1}"
        )
        return (
            f"{self.monitor} = {self.value:.4f} is {abs(self.reference - self.value):.4f} "
            f"from the reference {self.reference:.4f}, beyond the budget of "
            f"{self.max_drop:g}: {restored} are back and the sparsity is held at "
            f"{self.sparsity:.4f} for the rest of training."
        )
