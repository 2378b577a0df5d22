"""Pure moves of the mask searches: NumPy in, NumPy out, no Keras state.

Masks here are boolean arrays (`True` = kept). Every function takes a
`numpy.random.Generator`, so a seeded search is reproducible.
"""

import math

import numpy as np


def log_temperature(initial_temperature, step):
    """Logarithmic cooling: `T_k = T0 / (1 + ln(1 + k))`.

    >>> round(log_temperature(1.0, 0), 3), round(log_temperature(1.0, 199), 3)
    (1.0, 0.159)
    """
    return initial_temperature / (1.0 + math.log1p(step))


def decayed_rate(rate, step, steps):
    """A rate decaying linearly to 0 over a search: `r_k = r (1 - k / K)`.

    >>> decayed_rate(0.15, 0, 200), decayed_rate(0.15, 100, 200)
    (0.15, 0.075)
    """
    return rate * (1.0 - step / steps)


def metropolis_accepts(delta, temperature, rng):
    """Metropolis acceptance: always if `delta <= 0`, else with `exp(-delta / T)`.

    >>> metropolis_accepts(-1.0, 0.1, np.random.default_rng(0))
    True
    >>> metropolis_accepts(1e8, 1.0, np.random.default_rng(0))
    False

    A NaN `delta` (a candidate whose loss is NaN) is never accepted.
    """
    if math.isnan(delta):
        return False
    if delta <= 0:
        return True
    if temperature <= 0:
        return False
    return bool(rng.random() < math.exp(-delta / temperature))


def prune_random(mask, rate, rng):
    """Prunes each kept weight with probability `rate`, at least one of them.

    The neighbour of simulated annealing: a random fraction of what is still
    kept goes; pruned weights stay pruned. At least one weight goes so that no
    evaluation is spent on an unchanged mask (unless none is left to prune).

    >>> mask = np.ones(10, dtype=bool)
    >>> int(prune_random(mask, 0.0, np.random.default_rng(0)).sum())
    9
    """
    kept = np.flatnonzero(mask)
    if kept.size == 0:
        return mask.copy()
    chosen = kept[rng.random(kept.size) < rate]
    if chosen.size == 0:
        chosen = rng.choice(kept, size=1)
    candidate = mask.copy()
    candidate.flat[chosen] = False
    return candidate


def prune_small(mask, magnitudes, rate, rng):
    """Like `prune_random`, but draws the weights among the smallest kept ones.

    About `rate` of the kept weights go (a binomial count, at least one),
    drawn uniformly among the `2 * count` kept weights of smallest
    `magnitudes`: the search still explores, but near the weights that
    magnitude pruning would remove next.

    >>> mask = np.ones(6, dtype=bool)
    >>> magnitudes = np.array([5.0, 0.1, 4.0, 0.2, 3.0, 2.0])
    >>> prune_small(mask, magnitudes, 0.0, np.random.default_rng(0)).tolist()
    [True, True, True, False, True, True]
    """
    kept = np.flatnonzero(mask)
    if kept.size == 0:
        return mask.copy()
    count = max(1, int(rng.binomial(kept.size, rate)))
    pool = min(kept.size, 2 * count)
    smallest = kept[np.argpartition(magnitudes.ravel()[kept], pool - 1)[:pool]]
    candidate = mask.copy()
    candidate.flat[rng.choice(smallest, size=count, replace=False)] = False
    return candidate


def random_mask(allowed, prune_rate, rng):
    """Prunes each weight of `allowed` with probability `prune_rate`.

    >>> allowed = np.array([True, True, False, True])
    >>> random_mask(allowed, 1.0, np.random.default_rng(0)).tolist()
    [False, False, False, False]
    """
    return allowed & (rng.random(allowed.shape) >= prune_rate)


def mutate(mask, rate, allowed, rng):
    """Redraws each gene with probability `rate`; a redrawn gene is kept with probability `rate`.

    Dang's (2025) mutation: mostly prunes (a fraction `rate (1 - rate)` of the
    kept weights), and occasionally revives one (`rate**2` of the pruned),
    never outside `allowed`.

    >>> mask = np.ones(6, dtype=bool)
    >>> mutate(mask, 0.0, mask, np.random.default_rng(0)).tolist() == mask.tolist()
    True
    """
    redrawn = rng.random(mask.shape) < rate
    drawn = rng.random(mask.shape) < rate
    return np.where(redrawn, drawn, mask) & allowed


def mutate_small(mask, magnitudes, rate, allowed, rng):
    """`mutate` with its pruning drawn among the smallest kept weights.

    Prunes a fraction `rate (1 - rate)` of the kept weights, as `mutate`
    does on average, with `prune_small`, and revives each pruned weight of
    `allowed` with probability `rate**2`.

    >>> mask = np.ones(6, dtype=bool)
    >>> magnitudes = np.array([5.0, 0.1, 4.0, 0.2, 3.0, 2.0])
    >>> mutate_small(mask, magnitudes, 0.0, mask, np.random.default_rng(0)).tolist()
    [True, True, True, True, True, True]
    """
    if rate == 0:
        return mask & allowed
    pruned = prune_small(mask, magnitudes, rate * (1 - rate), rng)
    revived = ~mask & allowed & (rng.random(mask.shape) < rate**2)
    return (pruned | revived) & allowed


def single_point_crossover(first, second, rng):
    """Swaps the tails of two flattened masks after one random cut.

    >>> a, b = np.ones(4, dtype=bool), np.zeros(4, dtype=bool)
    >>> c, d = single_point_crossover(a, b, np.random.default_rng(1))
    >>> c.tolist(), d.tolist()
    ([True, True, False, False], [False, False, True, True])
    """
    flat_first, flat_second = first.ravel(), second.ravel()
    if flat_first.size < 2:
        return first.copy(), second.copy()
    cut = int(rng.integers(1, flat_first.size))
    child_first = np.concatenate([flat_first[:cut], flat_second[cut:]])
    child_second = np.concatenate([flat_second[:cut], flat_first[cut:]])
    return child_first.reshape(first.shape), child_second.reshape(second.shape)


def tournament(costs, size, rng):
    """Index of the lowest cost among `size` entries drawn without replacement.

    >>> tournament([3.0, 1.0, 2.0], 3, np.random.default_rng(0))
    1
    """
    entrants = rng.choice(len(costs), size=size, replace=False)
    return int(entrants[np.argmin(np.asarray(costs)[entrants])])


def move_positions(removed, allowed, count, rng):
    """Moves `count` of the removed positions to positions not yet removed.

    The neighbour of the fixed-budget search: `removed` is a flat boolean
    array with exactly k `True`; the result has exactly k too, all within
    `allowed`.

    >>> removed = np.array([True, True, False, False, False])
    >>> moved = move_positions(removed, np.ones(5, dtype=bool), 1, np.random.default_rng(0))
    >>> int(moved.sum()), int((moved & removed).sum())
    (2, 1)
    """
    sources = np.flatnonzero(removed)
    targets = np.flatnonzero(allowed & ~removed)
    count = min(count, sources.size, targets.size)
    moved = removed.copy()
    if count == 0:
        return moved
    moved[rng.choice(sources, size=count, replace=False)] = False
    moved[rng.choice(targets, size=count, replace=False)] = True
    return moved
