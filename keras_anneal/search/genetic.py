"""A genetic algorithm over pruning masks, layer by layer (Dang 2025)."""

import numpy as np

from keras_anneal import _validation
from keras_anneal.search import operators
from keras_anneal.search.base import LayerwiseSearch


class GeneticAlgorithm(LayerwiseSearch):
    """Layer-wise genetic search of pruning masks (Dang 2025).

    For each mask in turn: a population of `population_size` masks, each
    pruning every kept weight with probability `mutation_rate` (retried
    with the rate multiplied by `mutation_rate` again, up to `max_retries`
    times, until one candidate is within the loss cap). Each generation g
    keeps the `elite_size` lowest-cost masks and fills the rest with
    children: two parents by tournament (lowest cost among
    `tournament_size` drawn), single-point crossover with probability
    `crossover_rate`, then mutation at `mutation_rate (1 - g / generations)`
    (a redrawn gene is kept with that probability, so mutation mostly
    prunes). Weights pruned before the search stay pruned, and each output
    unit keeps its largest weight (`keep_units_connected`). The lowest-cost
    mask seen is kept, if within the layer's loss cap.

    Args:
        generations: > 0. Defaults to 20.
        population_size: >= 2. Defaults to 12.
        tournament_size: in [1, population_size]. Defaults to 5.
        crossover_rate: in [0, 1]. Defaults to 0.9.
        mutation_rate: in [0, 1]. Defaults to 0.15.
        elite_size: in [0, population_size). Defaults to 2.
        max_retries: attempts at a population with a candidate within the
            cap, > 0. Defaults to 10.
        proposal: how new masks prune: `"random"` weights (Dang 2025), or
            random ones among the smallest `|w|` (`"magnitude"`, see
            `operators.prune_small` and `operators.mutate_small`).
            Defaults to `"magnitude"`.
        patience: generations without a better mask after which a mask's
            search stops early; `None` runs every generation (Dang 2025).
            Defaults to 5.
        loss_cap: a float (loss increase allowed by the last mask) or a
            callable, as in `SimulatedAnnealing`. Defaults to 0.04.
        **kwargs: `cost`, `layers`, `batch_size`, `fine_tune`, `seed`,
            `keep_units_connected`, `verbose`, see
            `keras_anneal.search.MaskSearch`.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)]))
    >>> model.compile(loss="mse")
    >>> x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    >>> search = GeneticAlgorithm(generations=3, population_size=4, tournament_size=2,
    ...                           seed=0, verbose=0)
    >>> result = search.run(model, x, y)  # The masks found are set on the model.
    >>> result.final.loss <= result.baseline.loss + 0.04  # The loss cap.
    True
    """

    def __init__(self, generations=20, population_size=12, tournament_size=5, crossover_rate=0.9,
                 mutation_rate=0.15, elite_size=2, max_retries=10, proposal="magnitude", patience=5,
                 **kwargs):
        self.proposal = _validation.check_choice("proposal", proposal, ("magnitude", "random"))
        self.generations = _validation.check_step("generations", generations, positive=True)
        self.population_size = _validation.check_step("population_size", population_size, positive=True)
        if population_size < 2:
            raise ValueError(
                f"Argument `population_size` must be >= 2. Received: population_size={population_size}"
            )
        self.tournament_size = _validation.check_step("tournament_size", tournament_size, positive=True)
        if tournament_size > population_size:
            raise ValueError(
                "Argument `tournament_size` must be <= population_size "
                f"({population_size}). Received: tournament_size={tournament_size}"
            )
        self.elite_size = _validation.check_step("elite_size", elite_size)
        if elite_size >= population_size:
            raise ValueError(
                f"Argument `elite_size` must be < population_size ({population_size}). "
                f"Received: elite_size={elite_size}"
            )
        self.crossover_rate = _validation.check_probability("crossover_rate", crossover_rate)
        self.mutation_rate = _validation.check_probability("mutation_rate", mutation_rate)
        self.max_retries = _validation.check_step("max_retries", max_retries, positive=True)
        super().__init__(patience=patience, **kwargs)

    def _score(self, state, unit, masks, anchors):
        # Members hold the prunable weights only; the unit guard's anchors
        # are added to each for its evaluation, and to the mask found.
        return [(mask, *state.evaluate({unit: mask | anchors})) for mask in masks]

    def _random_member(self, allowed, magnitudes, prune_rate, rng):
        if self.proposal == "random":
            return operators.random_mask(allowed, prune_rate, rng)
        return operators.prune_small(allowed, magnitudes, prune_rate, rng)

    def _mutant(self, mask, magnitudes, rate, allowed, rng):
        if self.proposal == "random":
            return operators.mutate(mask, rate, allowed, rng)
        return operators.mutate_small(mask, magnitudes, rate, allowed, rng)

    def _initial_population(self, state, unit, allowed, anchors, magnitudes):
        prune_rate = 1.0
        for _ in range(self.max_retries):
            prune_rate *= self.mutation_rate
            population = self._score(state, unit, [
                self._random_member(allowed, magnitudes, prune_rate, state.rng)
                for _ in range(self.population_size)
            ], anchors)
            if any(evaluation.within_cap for _, evaluation, _ in population):
                break
        return population

    def _children(self, state, population, allowed, magnitudes, rate):
        costs = [cost for _, _, cost in population]
        children = []
        while len(children) < self.population_size - self.elite_size:
            first = population[operators.tournament(costs, self.tournament_size, state.rng)][0]
            second = population[operators.tournament(costs, self.tournament_size, state.rng)][0]
            if state.rng.random() < self.crossover_rate:
                first, second = operators.single_point_crossover(first, second, state.rng)
            children += [self._mutant(first, magnitudes, rate, allowed, state.rng),
                         self._mutant(second, magnitudes, rate, allowed, state.rng)]
        return children[:self.population_size - self.elite_size]

    def _search_mask(self, state, unit):
        anchors = self._anchors(unit)
        allowed = unit.get() & ~anchors
        magnitudes = np.abs(unit.weights())
        population = self._initial_population(state, unit, allowed, anchors, magnitudes)
        best = min(population, key=lambda member: member[2])
        bar = state.progress(self.generations, f"Genetic algorithm: {unit.name}")
        since_best = 0
        for generation in range(self.generations):
            if self._stalled(since_best):
                break
            since_best += 1
            rate = operators.decayed_rate(self.mutation_rate, generation, self.generations)
            population.sort(key=lambda member: member[2])
            elites = population[:self.elite_size]
            for _ in range(self.max_retries):
                children = self._children(state, population, allowed, magnitudes, rate)
                offspring = self._score(state, unit, children, anchors)
                if any(evaluation.within_cap for _, evaluation, _ in elites + offspring):
                    break
            population = elites + offspring
            leader = min(population, key=lambda member: member[2])
            if leader[2] < best[2]:
                best, since_best = leader, 0
            state.record(leader[1], leader[2], mask=unit.name, generation=generation, mutation_rate=rate)
            if bar is not None:
                bar.update(generation + 1, [("cost", best[2]), ("loss", best[1].loss),
                                            ("sparsity", best[1].sparsity)])
        return best[0] | anchors, best[1]


def genetic_algorithm(model, x, y=None, *, sample_weight=None, **kwargs):
    """Prunes `model`'s masks by a layer-wise genetic algorithm on `x, y`.

    Runs `GeneticAlgorithm(**kwargs)` (see there for the algorithm and
    arguments) on calibration data, a validation split rather than the test
    set. The model must be compiled and hold `Masked` layers; the search
    starts from their current masks and never revives a weight pruned before.

    Returns:
        A `SearchResult`; the masks found are set on the model.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)]))
    >>> model.compile(loss="mse")
    >>> x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    >>> result = genetic_algorithm(model, x, y, generations=3, population_size=6,
    ...                            seed=0, verbose=0)
    >>> result.sparsity > 0 and result.final.loss < result.baseline.loss + 0.04
    True
    """
    return GeneticAlgorithm(**kwargs).run(model, x, y, sample_weight)
