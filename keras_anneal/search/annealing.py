"""Simulated annealing over pruning masks: layer by layer, or a fixed budget."""

import math

import numpy as np

from keras_anneal import _validation
from keras_anneal import masking
from keras_anneal.search import costs
from keras_anneal.search import operators
from keras_anneal.search.base import LayerwiseSearch
from keras_anneal.search.base import MaskSearch


class SimulatedAnnealing(LayerwiseSearch):
    """Layer-wise simulated annealing of pruning masks (Dang 2025).

    For each mask in turn, for k = 0 … iterations - 1: the temperature is
    `T_k = T0 / (1 + ln(1 + k))` and the mutation rate
    `r_k = mutation_rate (1 - k / iterations)`; the neighbour prunes a
    fraction `r_k` of the still-kept weights; it replaces the current mask
    with Metropolis probability `min(1, exp(-(C_new - C) / T_k))`. The mask
    of lowest cost seen is kept, if within the layer's loss cap. Each output
    unit keeps its largest weight (`keep_units_connected`, default True).

    The default cost is `costs.loss_sparsity_cost`; `loss_cap` is a float (the loss
    increase allowed by the last mask, see `costs.RelativeLossCap`) or a
    callable `(position, sizes, baseline_loss) -> max_loss` such as
    `costs.WarmupLossCap(1.0)`, Dang's (2025) absolute cap.

    Args:
        iterations: candidates per mask, > 0. Defaults to 200 (Dang 2025).
        initial_temperature: `T0`, > 0. Defaults to 1.0 (Dang 2025).
        mutation_rate: initial pruning rate of the neighbour, in [0, 1].
            Defaults to 0.15.
        proposal: which kept weights a neighbour prunes: `"random"` ones
            (Dang 2025) or random ones among the smallest `|w|`
            (`"magnitude"`, see `operators.prune_small`). Defaults to
            `"magnitude"`.
        patience: candidates without a better mask after which a mask's
            search stops early; `None` runs every iteration (Dang 2025).
            Defaults to 50.
        loss_cap: see above. Defaults to 0.04.
        **kwargs: `cost`, `layers`, `batch_size`, `fine_tune`, `seed`,
            `keep_units_connected`, `verbose`, see
            `keras_anneal.search.MaskSearch`.
    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)]))
    >>> model.compile(loss="mse")
    >>> x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    >>> search = SimulatedAnnealing(iterations=20, loss_cap=0.04, seed=0, verbose=0)
    >>> result = search.run(model, x, y)  # The masks found are set on the model.
    >>> result.sparsity > 0 and result.final.loss <= result.baseline.loss + 0.04  # The loss cap.
    True
    """

    def __init__(self, iterations=200, initial_temperature=1.0, mutation_rate=0.15,
                 proposal="magnitude", patience=50, **kwargs):
        self.proposal = _validation.check_choice("proposal", proposal, ("magnitude", "random"))
        self.iterations = _validation.check_step("iterations", iterations, positive=True)
        self.initial_temperature = _validation.check_positive("initial_temperature", initial_temperature)
        self.mutation_rate = _validation.check_probability("mutation_rate", mutation_rate)
        super().__init__(patience=patience, **kwargs)

    def _search_mask(self, state, unit):
        current = unit.get()
        anchors = self._anchors(unit)
        magnitudes = np.abs(unit.weights())
        current_evaluation, current_cost = state.evaluate({unit: current})
        best, best_evaluation, best_cost = current, current_evaluation, current_cost
        bar = state.progress(self.iterations, f"Simulated annealing: {unit.name}")
        since_best = 0
        for step in range(self.iterations):
            prunable = current & ~anchors
            if not prunable.any() or self._stalled(since_best):
                break
            rate = operators.decayed_rate(self.mutation_rate, step, self.iterations)
            temperature = operators.log_temperature(self.initial_temperature, step)
            if self.proposal == "random":
                candidate = operators.prune_random(prunable, rate, state.rng) | anchors
            else:
                candidate = operators.prune_small(prunable, magnitudes, rate, state.rng) | anchors
            evaluation, cost = state.evaluate({unit: candidate})
            accepted = operators.metropolis_accepts(cost - current_cost, temperature, state.rng)
            since_best += 1
            if accepted:
                current, current_cost = candidate, cost
                if cost < best_cost:
                    best, best_evaluation, best_cost = candidate, evaluation, cost
                    since_best = 0
            state.record(
                evaluation, cost, mask=unit.name, step=step, temperature=temperature,
                mutation_rate=rate, accepted=accepted,
            )
            if bar is not None:
                bar.update(step + 1, [("cost", best_cost), ("loss", best_evaluation.loss),
                                      ("sparsity", best_evaluation.sparsity)])
        return best, best_evaluation


class FixedBudgetAnnealing(MaskSearch):
    """Simulated annealing of which exactly `budget` weights to remove.

    The state is a set of exactly k positions among the still-kept weights of
    the searched masks, all layers together (each output unit's largest
    weight left out of it: `keep_units_connected`, default True). A neighbour moves
    `max(1, round(move_fraction (1 - step / iterations) k))` of them to other
    kept positions; the energy is the cost (by default the loss,
    `costs.loss_energy`), accepted by the Metropolis rule at temperature
    `T_k = T0 / (1 + ln(1 + k))`. The lowest-energy set seen is removed.

    Args:
        budget: weights to remove: an int count, or a float in (0, 1) read
            as a fraction of the searched masks' weights.
        iterations: candidates, > 0. Defaults to 500.
        initial_temperature: `T0`, > 0, in units of the energy. Defaults to
            1% of the baseline loss: a move that raises the loss by 1% is
            accepted with probability 1/e at first.
        move_fraction: fraction of the set moved by a neighbour, in [0, 1].
            Defaults to 0.1.
        init: the first set: `"magnitude"` (the k smallest |w|) or
            `"random"`. Defaults to `"magnitude"`.
        **kwargs: `cost`, `layers`, `batch_size`, `fine_tune`, `seed`,
            `keep_units_connected`, `verbose`, see
            `keras_anneal.search.MaskSearch`.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)]))
    >>> model.compile(loss="mse")
    >>> x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    >>> result = FixedBudgetAnnealing(0.25, iterations=30, seed=0, verbose=0).run(model, x, y)
    >>> keras_anneal.sparsity_report(model).pruned  # A quarter of 8*16 + 16*1.
    36
    """

    default_cost = staticmethod(costs.loss_energy)

    def __init__(self, budget, iterations=500, initial_temperature=None, move_fraction=0.1,
                 init="magnitude", **kwargs):
        if isinstance(budget, (float, np.floating)):  # A NumPy float is a fraction too.
            budget = _validation.check_fraction("budget", float(budget), include_one=False)
        else:
            budget = _validation.check_step("budget", budget, positive=True)
        self.budget = budget
        self.iterations = _validation.check_step("iterations", iterations, positive=True)
        if initial_temperature is not None:
            initial_temperature = _validation.check_positive("initial_temperature", initial_temperature)
        self.initial_temperature = initial_temperature
        self.move_fraction = _validation.check_probability("move_fraction", move_fraction)
        self.init = _validation.check_choice("init", init, ("magnitude", "random"))
        super().__init__(**kwargs)

    def _budget_count(self, units):
        total = sum(unit.get().size for unit in units)
        if isinstance(self.budget, float):
            return masking.pruned_count(self.budget, total)
        return self.budget

    def _check_units(self, units):
        count = self._budget_count(units)
        removable = sum(int((unit.get() & ~self._anchors(unit)).sum()) for unit in units)
        if count > removable:
            names = ", ".join(unit.name for unit in units)
            guard = (", less one per connected output unit (keep_units_connected=True)"
                     if self.keep_units_connected else "")
            raise ValueError(
                f"Argument `budget` must not exceed the {removable} weights the search may "
                f"remove from the searched masks ({names}): those still kept{guard}. "
                f"Received: budget={self.budget!r} "
                f"({count} weights)"
            )

    def _search(self, state, units):
        state.scorer.focus([unit.layer for unit in units])
        starts = [unit.get() for unit in units]
        kept = np.concatenate([mask.ravel() for mask in starts])
        allowed = np.concatenate([(mask & ~self._anchors(unit)).ravel() for unit, mask in zip(units, starts)])
        bounds = np.cumsum([0] + [mask.size for mask in starts])
        count = self._budget_count(units)

        def changes(removed):
            return {
                unit: (kept[lo:hi] & ~removed[lo:hi]).reshape(start.shape)
                for unit, start, lo, hi in zip(units, starts, bounds[:-1], bounds[1:])
            }

        if self.init == "magnitude":
            magnitudes = np.concatenate([np.abs(unit.weights()).ravel() for unit in units])
            scores = np.where(allowed, -magnitudes, -np.inf)
            removed = masking.keep_largest(scores, count)
        else:
            removed = np.zeros_like(allowed)
            removed[state.rng.choice(np.flatnonzero(allowed), size=count, replace=False)] = True
        current = best = removed
        current_evaluation, current_cost = state.evaluate(changes(current))
        best_evaluation, best_cost = current_evaluation, current_cost
        initial_temperature = self.initial_temperature or max(0.01 * abs(state.baseline_loss), 1e-12)
        bar = state.progress(self.iterations, f"Fixed-budget annealing: {count} weights")
        for step in range(self.iterations):
            moves = max(1, round(self.move_fraction * (1 - step / self.iterations) * count))
            temperature = operators.log_temperature(initial_temperature, step)
            candidate = operators.move_positions(current, allowed, moves, state.rng)
            evaluation, cost = state.evaluate(changes(candidate))
            accepted = operators.metropolis_accepts(cost - current_cost, temperature, state.rng)
            if accepted:
                current, current_cost = candidate, cost
                if cost < best_cost:
                    best, best_evaluation, best_cost = candidate, evaluation, cost
            state.record(evaluation, cost, step=step, temperature=temperature, moved=moves,
                         accepted=accepted)
            if bar is not None:
                bar.update(step + 1, [("cost", best_cost), ("loss", best_evaluation.loss),
                                      ("sparsity", best_evaluation.sparsity)])
        state.commit(changes(best))


def simulated_annealing(model, x, y=None, *, sample_weight=None, **kwargs):
    """Prunes `model`'s masks by layer-wise simulated annealing on `x, y`.

    Runs `SimulatedAnnealing(**kwargs)` (see there for the algorithm and
    arguments) on calibration data, a validation split rather than the test
    set. The model must be compiled and hold `Masked` layers; the search
    starts from their current masks and only removes weights.

    Returns:
        A `SearchResult`; the masks found are set on the model.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)]))
    >>> model.compile(loss="mse")
    >>> x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    >>> result = simulated_annealing(model, x, y, iterations=20, seed=0, verbose=0)
    >>> result.sparsity > 0 and result.final.loss < result.baseline.loss + 0.04
    True
    """
    return SimulatedAnnealing(**kwargs).run(model, x, y, sample_weight)


def fixed_budget_annealing(model, x, y=None, *, budget, sample_weight=None, **kwargs):
    """Removes exactly `budget` weights, chosen by simulated annealing on `x, y`.

    Runs `FixedBudgetAnnealing(budget, **kwargs)`; see there.

    Returns:
        A `SearchResult`; the masks found are set on the model.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)]))
    >>> model.compile(loss="mse")
    >>> x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    >>> result = fixed_budget_annealing(model, x, y, budget=40, iterations=20,
    ...                                 seed=0, verbose=0)
    >>> keras_anneal.sparsity_report(model).pruned
    40
    """
    return FixedBudgetAnnealing(budget, **kwargs).run(model, x, y, sample_weight)
