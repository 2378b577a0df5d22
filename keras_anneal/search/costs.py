"""What a mask search minimises: the evaluation of a candidate, costs and loss caps."""

import dataclasses
import math

from keras_anneal import _validation

#: The cost added when a candidate's loss reaches the cap (Dang 2025).
LOSS_CAP_PENALTY = 1e8

#: The default loss cap: the loss may rise this much by the last searched layer.
DEFAULT_LOSS_INCREASE = 0.04


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One candidate mask, scored on the calibration data.

    Attributes:
        loss: the model's compiled loss with the candidate masks.
        metrics: every value the compiled evaluation reports, `"loss"`
            included (e.g. `metrics["accuracy"]`).
        sparsity: pruned / total over all masked weights of the model.
        mean_layer_sparsity: the mean of the per-mask sparsities (every
            layer counts the same, whatever its size).
        baseline_loss: the loss with the masks the search started from.
        max_loss: the loss cap in force for this candidate (`inf` if none).
    """

    loss: float
    metrics: dict
    sparsity: float
    mean_layer_sparsity: float
    baseline_loss: float
    max_loss: float = math.inf

    @property
    def within_cap(self):
        """Whether the loss is below the cap."""
        return self.loss < self.max_loss


def loss_sparsity_cost(evaluation, penalty=LOSS_CAP_PENALTY):
    """The layer-wise searches' default cost: `(L - L_base)^2 + 1 / (s + 1e-8)`, penalised at the cap.

    `s` is the mean per-layer sparsity. When the loss reaches the cap, the
    squared loss change is replaced by `penalty`, so no such candidate ever
    beats one within the cap.

    >>> e = Evaluation(loss=0.3, metrics={}, sparsity=0.5, mean_layer_sparsity=0.5,
    ...                baseline_loss=0.1, max_loss=1.0)
    >>> round(loss_sparsity_cost(e), 6)
    2.04
    """
    if evaluation.within_cap:
        loss_term = (evaluation.loss - evaluation.baseline_loss) ** 2
    else:
        loss_term = penalty
    return loss_term + 1.0 / (evaluation.mean_layer_sparsity + 1e-8)


def loss_energy(evaluation):
    """The loss itself: the fixed-budget search's default cost (its energy).

    >>> loss_energy(Evaluation(loss=0.3, metrics={}, sparsity=0.5, mean_layer_sparsity=0.5,
    ...                        baseline_loss=0.1))
    0.3
    """
    return evaluation.loss


class RelativeLossCap:
    """A loss cap above the baseline that rises with the share of weights searched.

    With masks of `sizes` n_0, n_1, … searched in that order, the cap for
    mask i is `max_loss_i = L_base + increase * (n_0 + … + n_i) / (n_0 + … )`:
    each mask may raise the loss in proportion to its weight count, so the
    large layers, where the weights are, get most of the budget, and the last
    one may bring the loss to `L_base + increase`.

    >>> cap = RelativeLossCap(0.04)
    >>> [round(cap(i, [100, 100, 200], 0.1), 2) for i in range(3)]
    [0.11, 0.12, 0.14]
    """

    def __init__(self, increase):
        self.increase = _validation.check_non_negative("loss_cap", increase)

    def __call__(self, position, sizes, baseline_loss):
        return baseline_loss + self.increase * sum(sizes[: position + 1]) / sum(sizes)

    def __repr__(self):
        return f"RelativeLossCap({self.increase!r})"


class WarmupLossCap:
    """Dang's (2025) cap, an absolute loss warming up layer by layer.

    For mask i of n: `max_loss_i = loss_to_warmup * (i + 1) / n`.

    >>> cap = WarmupLossCap(1.0)
    >>> [cap(i, [10, 10, 10, 10], 0.1) for i in range(4)]
    [0.25, 0.5, 0.75, 1.0]
    """

    def __init__(self, loss_to_warmup=1.0):
        self.loss_to_warmup = _validation.check_positive("loss_to_warmup", loss_to_warmup)

    def __call__(self, position, sizes, baseline_loss):
        return self.loss_to_warmup * (position + 1) / len(sizes)

    def __repr__(self):
        return f"WarmupLossCap({self.loss_to_warmup!r})"


def get_loss_cap(loss_cap):
    """A float is a `RelativeLossCap`; a callable `(i, sizes, L_base) -> cap` is kept."""
    if callable(loss_cap):
        return loss_cap
    if isinstance(loss_cap, bool) or not isinstance(loss_cap, (int, float)):
        raise TypeError(
            "Argument `loss_cap` must be a float (the loss increase allowed at the "
            "last layer) or a callable `(position, sizes, baseline_loss) -> "
            f"max_loss`. Received: loss_cap={loss_cap!r}"
        )
    return RelativeLossCap(loss_cap)


def check_cost(cost, default):
    """`None` is `default`; otherwise a callable `Evaluation -> float`."""
    if cost is None:
        return default
    if not callable(cost):
        raise TypeError(
            "Argument `cost` must be a callable taking an `Evaluation` and returning "
            f"a float. Received: cost={cost!r}"
        )
    return cost
