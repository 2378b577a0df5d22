"""Pruning schedules: a map from the optimizer step to a target sparsity.

A schedule is a small, pure object: `schedule(step)` returns the fraction of
weights that should be pruned after `step` optimizer updates. It holds no
Keras state, so it can be tested, plotted and serialized on its own.

Annealing plans start and end at steps given either as numbers
(`begin_step`, `end_step`) or as fractions of the `fit` call's total number
of steps (`begin_fraction`, `end_fraction`); the `AnnealedPruning` callback
passes that total as `total_steps`, so no step arithmetic is needed:

>>> schedule = FSA(final_sparsity=0.9, end_fraction=0.5)
>>> round(schedule(1000, total_steps=2000), 3)
0.9
>>> late = FSA(final_sparsity=0.9, begin_fraction=0.2, end_fraction=0.6)
>>> late(400, total_steps=2000), late(1200, total_steps=2000)
(0.0, 0.9)

Argument names shared with tfmot's schedules (`initial_sparsity`,
`final_sparsity`, `target_sparsity`, `begin_step`, `end_step`, `power`) mean
the same here. Before `begin_step` every schedule returns 0.
"""

import numbers

import keras

from keras_anneal import _validation
from keras_anneal._config import ConfigMixin

_PACKAGE = "keras_anneal"


class PruningSchedule(ConfigMixin):
    """Base class of pruning schedules: optimizer step -> target sparsity.

    Subclasses implement `__call__(step, total_steps=None)` and `get_config()`
    (which returns exactly the constructor arguments) and expose
    `final_sparsity`, the largest value the schedule reaches.

    Example:

    >>> class Halfway(PruningSchedule):
    ...     final_sparsity = 0.5
    ...     def __call__(self, step, total_steps=None):
    ...         return 0.5 if step >= total_steps // 2 else 0.0
    ...     def get_config(self):
    ...         return {}
    >>> Halfway()(60, total_steps=100)
    0.5
    """

    final_sparsity = 0.0

    def __call__(self, step, total_steps=None):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `__call__(step, total_steps)`."
        )

    def completion_step(self, total_steps=None):
        """The first step at which the schedule reaches `final_sparsity`.

        `AnnealedPruning` lands an update on it, so that a plan whose end is
        not a multiple of `frequency` still ends at its final sparsity; None
        where it cannot be known. The default searches `[0, total_steps]` by
        bisection, for a schedule that never decreases (None without
        `total_steps`, or when it is not reached by then); override it where
        the schedule knows better.

        >>> ConstantSparsity(0.5, begin_step=45).completion_step(total_steps=100)
        45
        """
        if total_steps is None or self(total_steps, total_steps) < self.final_sparsity:
            return None
        low, high = 0, total_steps  # The answer lies in (low - 1, high].
        while low < high:
            middle = (low + high) // 2
            if self(middle, total_steps) >= self.final_sparsity:
                high = middle
            else:
                low = middle + 1
        return low

    def get_config(self):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `get_config()`."
        )



class _AnnealingPlan(PruningSchedule):
    """A schedule that rises from 0 at `begin_step` to `final_sparsity` at the end.

    Subclasses give the shape as `_sparsity_at(progress)`, where `progress`
    goes from 0 at `begin_step` to 1 at the end step.
    """

    def __init__(self, final_sparsity, begin_step=0, end_step=None, end_fraction=None,
                 begin_fraction=None):
        self.final_sparsity = _validation.check_sparsity("final_sparsity", final_sparsity)
        self.begin_step = _validation.check_step("begin_step", begin_step)
        if begin_fraction is not None:
            if self.begin_step:
                raise ValueError(
                    "Give the start of the schedule as `begin_step` or as "
                    f"`begin_fraction`, not both. Received: begin_step={begin_step!r}, "
                    f"begin_fraction={begin_fraction!r}"
                )
            begin_fraction = _validation.check_fraction(
                "begin_fraction", begin_fraction, include_one=False
            )
        if end_step is not None and end_fraction is not None:
            raise ValueError(
                "Give the end of the schedule as `end_step` or as `end_fraction`, "
                f"not both. Received: end_step={end_step!r}, "
                f"end_fraction={end_fraction!r}"
            )
        if end_step is None and end_fraction is None:
            end_fraction = 0.5
        if end_step is not None:
            end_step = _validation.check_step("end_step", end_step, positive=True)
            if end_step <= self.begin_step:
                raise ValueError(
                    "Argument `end_step` must be greater than `begin_step`. "
                    f"Received: end_step={end_step}, begin_step={self.begin_step}"
                )
        else:
            end_fraction = _validation.check_fraction("end_fraction", end_fraction)
            if begin_fraction is not None and end_fraction <= begin_fraction:
                raise ValueError(
                    "Argument `end_fraction` must be greater than `begin_fraction`. "
                    f"Received: end_fraction={end_fraction}, begin_fraction={begin_fraction}"
                )
        self.end_step = end_step
        self.end_fraction = end_fraction
        self.begin_fraction = begin_fraction

    def _step_at(self, argument, fraction, total_steps):
        """`round(fraction * total_steps)`, or a clear error without a total."""
        if total_steps is None:
            raise ValueError(
                f"{type(self).__name__} was given `{argument}="
                f"{fraction}`, which needs the total number of training "
                "steps, and none is known (e.g. a dataset of unknown length). "
                "Pass `steps_per_epoch` to `fit`, or give step numbers instead. "
                "Received: total_steps=None"
            )
        return round(fraction * total_steps)

    def _span(self, total_steps):
        """(begin step, end step) for a `fit` call of `total_steps` steps."""
        begin_step = (self.begin_step if self.begin_fraction is None
                      else self._step_at("begin_fraction", self.begin_fraction, total_steps))
        if self.end_step is not None:
            if self.end_step <= begin_step:
                raise ValueError(
                    f"`begin_fraction={self.begin_fraction}` of {total_steps} total steps "
                    f"starts at step {begin_step}, which is not before "
                    f"`end_step={self.end_step}`. Received: total_steps={total_steps}"
                )
            return begin_step, self.end_step
        end_step = self._step_at("end_fraction", self.end_fraction, total_steps)
        if end_step <= begin_step:
            raise ValueError(
                f"`end_fraction={self.end_fraction}` of {total_steps} total steps "
                f"ends at step {end_step}, which is not after "
                f"`begin_step={begin_step}`. Received: total_steps={total_steps}"
            )
        return begin_step, end_step

    def resolve_begin_step(self, total_steps=None):
        """The step at which the schedule starts to rise from 0 (`total_steps`,
        those of the `fit` call, is needed for `begin_fraction`)."""
        return self._span(total_steps)[0]

    def resolve_end_step(self, total_steps=None):
        """The step at which the schedule reaches `final_sparsity` (`total_steps`,
        those of the `fit` call, is needed for `end_fraction`)."""
        return self._span(total_steps)[1]

    def completion_step(self, total_steps=None):
        """`end_step`, resolved for a `fit` of `total_steps` steps."""
        if self.end_step is None and total_steps is None:
            return None
        return self.resolve_end_step(total_steps)

    def __call__(self, step, total_steps=None):
        begin_step, end_step = self._span(total_steps)
        if step < begin_step:
            return 0.0
        progress = min(1.0, (step - begin_step) / (end_step - begin_step))
        return float(self._sparsity_at(progress))

    def _sparsity_at(self, progress):
        raise NotImplementedError

    def _plan_config(self):
        return {
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "end_fraction": self.end_fraction,
            "begin_fraction": self.begin_fraction,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FSA(_AnnealingPlan):
    """The annealing plan of Feature Selection with Annealing (Barbu et al. 2017).

    With `M` prunable weights of which `k = (1 - s_f) M` are kept at the end,
    FSA keeps `M_e = k + (M - k) max(0, (N - 2e) / (2 e mu + N))` at
    iteration `e` of `N` (eq. 3 of the paper), reaching `k` at `e = N / 2`.
    Here `e = step - begin_step` and `N = 2 (end_step - begin_step)`, so

        sparsity(step) = s_f * (1 - max(0, (N - 2e) / (2 e mu + N))).

    `mu` sets how front-loaded the removal is: `mu = 0` removes weights at a
    constant pace, larger `mu` removes most of them early (half-way from
    `begin_step` to the end, i.e. at `e = N / 4`, a fraction
    `(mu + 1) / (mu + 2)` of the final sparsity is reached).
    The paper used `mu = 300` for linear models and its public code defaults
    to 100. The default here, 10, comes from the mnist_cnn sweep
    (`benchmarks/dropout_vs_anneal.py`, 12 epochs, 90% of the dense weights
    pruned, seed 0): test accuracy 98.97% at `mu = 10`, 98.89% at `mu = 1`,
    98.81% at `mu = 100`. That is one seed; gaps this small are within noise.

    Args:
        final_sparsity: fraction of weights pruned at the end, in [0, 1).
        mu: annealing parameter, >= 0. Defaults to 10.
        begin_step: step at which pruning starts. Defaults to 0.
        end_step: step at which `final_sparsity` is reached.
        end_fraction: the same, as a fraction of the `fit` call's total steps.
            Defaults to 0.5 (FSA's `N / 2`) when `end_step` is not given.
        begin_fraction: `begin_step` as a fraction of the `fit` call's total
            steps, in (0, 1), instead of a step number (leave it out to start
            at step 0).

    Example:

    >>> schedule = FSA(final_sparsity=0.9, mu=0, end_step=100)
    >>> schedule(0), schedule(50), schedule(100), schedule(500)
    (0.0, 0.45, 0.9, 0.9)
    """

    def __init__(
        self,
        final_sparsity,
        mu=10.0,
        begin_step=0,
        end_step=None,
        end_fraction=None,
        begin_fraction=None,
    ):
        super().__init__(final_sparsity, begin_step, end_step, end_fraction, begin_fraction)
        self.mu = _validation.check_non_negative("mu", mu)

    def _sparsity_at(self, progress):
        # With x = e / N = progress / 2: (N - 2e) / (2 e mu + N) = (1 - p) / (1 + mu p).
        return self.final_sparsity * (1.0 - (1.0 - progress) / (1.0 + self.mu * progress))

    def get_config(self):
        return {**self._plan_config(), "mu": self.mu}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PolynomialDecay(_AnnealingPlan):
    """Gradual pruning of Zhu & Gupta (2017), as tfmot's `PolynomialDecay`.

        sparsity(step) = s_f + (s_i - s_f) * (1 - (step - begin) / (end - begin)) ** power

    between `begin_step` and the end step; `s_f` after it, 0 before it.
    The arguments are keyword-only, so that code written for tfmot's
    `PolynomialDecay(initial_sparsity, final_sparsity, ...)` cannot swap them.

    Args:
        final_sparsity: sparsity `s_f` at the end, in [0, 1).
        initial_sparsity: sparsity `s_i` at `begin_step`, in [0, 1).
            Defaults to 0.
        begin_step: step at which pruning starts. Defaults to 0.
        end_step: step at which `final_sparsity` is reached.
        end_fraction: the same, as a fraction of the `fit` call's total steps.
            Defaults to 0.5 when `end_step` is not given.
        begin_fraction: `begin_step` as a fraction of the `fit` call's total
            steps, in (0, 1), instead of a step number (leave it out to start
            at step 0).
        power: exponent of the decay, > 0. Defaults to 3.

    Example:

    >>> schedule = PolynomialDecay(final_sparsity=0.8, end_step=100)
    >>> [round(schedule(step), 4) for step in (0, 50, 100)]
    [0.0, 0.7, 0.8]
    """

    def __init__(
        self,
        *,
        final_sparsity,
        initial_sparsity=0.0,
        begin_step=0,
        end_step=None,
        end_fraction=None,
        begin_fraction=None,
        power=3,
    ):
        super().__init__(final_sparsity, begin_step, end_step, end_fraction, begin_fraction)
        self.initial_sparsity = _validation.check_sparsity(
            "initial_sparsity", initial_sparsity
        )
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError(
                "Argument `initial_sparsity` must not exceed `final_sparsity`: "
                "pruning only adds. Received: "
                f"initial_sparsity={initial_sparsity}, final_sparsity={final_sparsity}"
            )
        self.power = _validation.check_positive("power", power)

    def _sparsity_at(self, progress):
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (
            1.0 - progress
        ) ** self.power

    def get_config(self):
        return {
            **self._plan_config(),
            "initial_sparsity": self.initial_sparsity,
            "power": self.power,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantSparsity(PruningSchedule):
    """`target_sparsity` from `begin_step` on, as tfmot's `ConstantSparsity`.

    Args:
        target_sparsity: sparsity from `begin_step` on, in [0, 1).
        begin_step: step at which pruning starts. Defaults to 0.

    Example:

    >>> schedule = ConstantSparsity(0.5, begin_step=10)
    >>> schedule(9), schedule(10)
    (0.0, 0.5)
    """

    def __init__(self, target_sparsity, begin_step=0):
        self.target_sparsity = _validation.check_sparsity(
            "target_sparsity", target_sparsity
        )
        self.begin_step = _validation.check_step("begin_step", begin_step)

    @property
    def final_sparsity(self):
        return self.target_sparsity

    def __call__(self, step, total_steps=None):
        return self.target_sparsity if step >= self.begin_step else 0.0

    def completion_step(self, total_steps=None):
        return self.begin_step

    def get_config(self):
        return {"target_sparsity": self.target_sparsity, "begin_step": self.begin_step}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantRate(PruningSchedule):
    """Remove a fixed fraction of the weights every `interval` steps (Bartoldson's annealed pruning).

    After `n = (step - begin_step) // interval` removals the sparsity is

        relative_to="original":  min(n * rate, final_sparsity)
        relative_to="remaining": min(1 - (1 - rate) ** n, final_sparsity)

    The defaults are the setting of Bartoldson's Keras annealing callback,
    "0.5% of a layer's connections every 50 updates": after 112 removals (12
    epochs of MNIST at batch 128) that is 56% pruned when each removal takes
    0.5% of the original count, about 43% when it takes 0.5% of what remains.

    Args:
        rate: fraction removed at each removal, in (0, 1). Defaults to 0.005.
        interval: steps between removals, > 0. Defaults to 50.
        relative_to: `"original"` or `"remaining"`: what `rate` is a
            fraction of. Defaults to `"original"`.
        final_sparsity: the sparsity at which removal stops, in [0, 1).
            Defaults to 0.99.
        begin_step: step at which pruning starts. Defaults to 0.

    Example:

    >>> ConstantRate()(112 * 50)
    0.56
    >>> round(ConstantRate(relative_to="remaining")(112 * 50), 4)
    0.4296
    """

    def __init__(
        self,
        rate=0.005,
        interval=50,
        relative_to="original",
        final_sparsity=0.99,
        begin_step=0,
    ):
        self.rate = _validation.check_fraction("rate", rate, include_one=False)
        self.interval = _validation.check_step("interval", interval, positive=True)
        self.relative_to = _validation.check_choice(
            "relative_to", relative_to, ("original", "remaining")
        )
        self.final_sparsity = _validation.check_sparsity("final_sparsity", final_sparsity)
        self.begin_step = _validation.check_step("begin_step", begin_step)

    def __call__(self, step, total_steps=None):
        if step < self.begin_step:
            return 0.0
        removals = (step - self.begin_step) // self.interval
        if self.relative_to == "original":
            sparsity = removals * self.rate
        else:
            sparsity = 1.0 - (1.0 - self.rate) ** removals
        return float(min(round(sparsity, 12), self.final_sparsity))

    def get_config(self):
        return {
            "rate": self.rate,
            "interval": self.interval,
            "relative_to": self.relative_to,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
        }


def recommended(final_sparsity):
    """The plan to use when you only know how sparse the model should be.

    A linear ramp (FSA with `mu = 0`) from 0 at 20% of the `fit` call's
    steps to `final_sparsity` at 80%: the network first learns which weights
    matter, then loses them at an even pace, then recovers.

        FSA(final_sparsity, mu=0, begin_fraction=0.2, end_fraction=0.8)

    Chosen on validation accuracy (`benchmarks/allocation.py`, four MNIST
    networks of the Keras examples' kinds, LAMP at 90%, short trainings):
    the best mean of six plans, 1.2 points above FSA's front-loaded default
    (`mu = 10`, from step 0 to half-way); at the length of Keras'
    mnist_convnet example the two tie on validation.
    `AnnealedPruning(0.9)` uses it.

    Args:
        final_sparsity: fraction of the weights pruned at the end, in [0, 1).

    Returns:
        An `FSA` schedule.

    Example:

    >>> plan = recommended(0.9)
    >>> [round(plan(step, total_steps=100), 2) for step in (10, 20, 50, 80, 100)]
    [0.0, 0.0, 0.45, 0.9, 0.9]
    """
    return FSA(final_sparsity, mu=0.0, begin_fraction=0.2, end_fraction=0.8)


def get(identifier):
    """A schedule from an instance, a `keras.saving` config dict, or a sparsity.

    Args:
        identifier: a `PruningSchedule`; the dict that
            `keras.saving.serialize_keras_object` made of one; or a number,
            the final sparsity of the `recommended` plan.

    Returns:
        A `PruningSchedule`.

    Raises:
        TypeError: for anything else.
        ValueError: for a number outside [0, 1).

    Example:

    >>> get(0.9).get_config()["begin_fraction"]
    0.2
    """
    if isinstance(identifier, PruningSchedule):
        return identifier
    if isinstance(identifier, dict):
        schedule = keras.saving.deserialize_keras_object(identifier)
        if isinstance(schedule, PruningSchedule):
            return schedule
    if isinstance(identifier, numbers.Real) and not isinstance(identifier, bool):
        return recommended(_validation.check_sparsity("schedule", identifier))
    raise TypeError(
        "Argument `schedule` must be a `keras_anneal.schedules.PruningSchedule`, "
        "e.g. `keras_anneal.schedules.FSA(final_sparsity=0.9)`, or a final "
        f"sparsity such as 0.9. Received: schedule={identifier!r}"
    )
