"""Sparsity allocation: how many of the pruned weights each tensor gives up.

The schedule says how many weights are pruned overall, the allocation how
many of them in each weight tensor, the criterion which ones within it.
Pure NumPy: nothing here touches Keras.

- `Uniform` (`"uniform"`, alias `"layer"`): every tensor at the same sparsity.
- `Global` (`"global"`): the criterion's scores ranked across all tensors.
- `ERK` (`"erk"`): Erdos-Renyi-Kernel (Evci et al. 2020, RigL): a tensor's
  density is proportional to `sum(shape) / prod(shape)`, i.e. for a
  convolution `(n_in + n_out + k_h + k_w) / (n_in n_out k_h k_w)`, scaled to
  the overall target, tensors that would exceed density 1 kept dense.
- `LAMP` (`"lamp"`): layer-adaptive magnitude scores (Lee et al. 2021),
  `w_u^2 / sum_{v >= u} w_v^2` over one tensor's weights sorted by
  magnitude, ranked globally; no hyperparameter.
- `PerLayer({name: sparsity or None}, rest="uniform")`: the sparsities of
  some layers fixed (`None` keeps a layer dense), the other layers absorb
  the rest by the allocation `rest`.
  A callable `f(sparsity, sizes) -> {name: sparsity}` is allowed too.

Every allocation prunes exactly `floor(s * N)` of the `N` prunable weights
(or more, if more were already pruned: pruning is cumulative), and, unless
`keep_units_connected=False`, never takes the last incoming connection of an
output unit (an index of a kernel's last axis): each unit's best-scoring
kept weight is reserved.

Example:

>>> weights = [np.random.default_rng(0).normal(size=(8, 4)), np.ones((4, 2))]
>>> masks = get("erk").masks(weights, [np.ones_like(w) for w in weights], 0.5,
...                          weights=weights)
>>> [int(m.size - m.sum()) for m in masks]  # 20 of 40 pruned, mostly the big one.
[19, 1]

The four named allocations on one pair of tensors, 55 of their 110 weights
pruned (the small tensor's weights are all smaller than the big one's):

>>> w = [np.arange(1.0, 101.0).reshape(10, 10), 0.1 * np.arange(1.0, 11.0).reshape(10, 1)]
>>> for allocation in (Uniform(), Global(), ERK(), LAMP()):  # Weights kept per tensor.
...     masks = allocation.masks(w, [np.ones_like(x) for x in w], 0.5, layers=["big", "small"])
...     print(type(allocation).__name__, [int(m.sum()) for m in masks])
Uniform [50, 5]
Global [54, 1]
ERK [45, 10]
LAMP [46, 9]
"""

import dataclasses

import keras
import numpy as np

from keras_anneal import _validation
from keras_anneal import masking
from keras_anneal._config import ConfigMixin


@dataclasses.dataclass
class WeightTensor:
    """One prunable weight tensor, as an allocation sees it.

    Attributes:
        layer: name of the `Masked` layer that holds it.
        weight: its values (NumPy).
        score: the criterion's scores, `-inf` where already pruned and
            `+inf` where reserved (a unit's last connection).
        lowest: weights already pruned: the least it may have pruned.
        highest: the most it may have pruned (size minus reserved weights).
    """

    layer: str
    weight: np.ndarray
    score: np.ndarray
    lowest: int
    highest: int

    @property
    def size(self):
        return int(self.score.size)


class Allocation(ConfigMixin):
    """Base class of the allocations: override `pruned_counts`.

    Example:

    >>> class FirstLayerDense(Allocation):  # Prunes everything from the others.
    ...     def pruned_counts(self, tensors, n_pruned, sparsity, final_sparsity):
    ...         shares = [t.size for t in tensors]
    ...         return distribute(n_pruned, tensors, shares, pinned={0: 0})
    >>> w = [np.ones((2, 2)), np.ones((4, 4))]
    >>> [int(m.sum()) for m in FirstLayerDense().masks(w, [np.ones_like(x) for x in w], 0.5)]
    [4, 6]
    """

    def pruned_counts(self, tensors, n_pruned, sparsity, final_sparsity):
        """Weights pruned per tensor, summing to `n_pruned`.

        Args:
            tensors: list of `WeightTensor`.
            n_pruned: the overall count to reach.
            sparsity: the overall target now (`n_pruned` is its floor).
            final_sparsity: the schedule's final target, for allocations
                that ramp per-layer targets along the plan.

        Returns:
            A list of ints, `tensors[i].lowest <= c_i <= tensors[i].highest`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            "`pruned_counts(tensors, n_pruned, sparsity, final_sparsity)`."
        )

    def check(self, layer_sizes, final_sparsity, capacities=None):
        """Raises `ValueError` if this allocation cannot serve the model.

        Called before training changes anything. `layer_sizes` maps each
        `Masked` layer's name to its number of prunable weights, and
        `capacities` to the most it may lose (defaults to its size).
        """

    def masks(
        self,
        scores,
        masks,
        sparsity,
        *,
        weights=None,
        layers=None,
        final_sparsity=None,
        keep_units_connected=True,
        unit_axes=None,
    ):
        """New 0/1 masks at overall `sparsity`, keeping the largest scores.

        Args:
            scores: list of float arrays, larger meaning more worth keeping;
                finite where the mask is 1.
            masks: list of current 0/1 masks (already pruned weights stay pruned).
            sparsity: overall target in [0, 1).
            weights: the weights themselves, for allocations that look at
                them (`LAMP`). Defaults to the scores.
            layers: name of each tensor's layer, for `PerLayer`. Defaults
                to `"tensor_<i>"`.
            final_sparsity: the schedule's final target. Defaults to `sparsity`.
            keep_units_connected: reserve each output unit's best-scoring
                kept weight. Defaults to True.
            unit_axes: per tensor, how many trailing axes index its output
                units (2 for a depthwise kernel). Defaults to 1.

        Returns:
            A list of float32 0/1 masks.

        Raises:
            ValueError: on non-finite scores, or a target the allocation
                cannot reach (too many weights reserved, or pinned).
        """
        sparsity = _validation.check_sparsity("sparsity", sparsity)
        final_sparsity = sparsity if final_sparsity is None else final_sparsity
        layers = layers or [f"tensor_{index}" for index in range(len(scores))]
        weights = scores if weights is None else weights
        unit_axes = unit_axes or [1] * len(scores)
        tensors = [
            _weight_tensor(layer, np.asarray(weight), score, mask, keep_units_connected, axes)
            for layer, weight, score, mask, axes in zip(layers, weights, scores, masks, unit_axes)
        ]
        total = sum(t.size for t in tensors)
        n_pruned = max(masking.pruned_count(sparsity, total), sum(t.lowest for t in tensors))
        reachable = sum(t.highest for t in tensors)
        if n_pruned > reachable:
            raise ValueError(
                f"Sparsity {sparsity:g} prunes {n_pruned} of {total} weights, but only "
                f"{reachable} can go while every output unit keeps one incoming "
                "connection. Lower the sparsity or pass keep_units_connected=False. "
                f"Received: sparsity={sparsity!r}"
            )
        counts = self.pruned_counts(tensors, n_pruned, sparsity, final_sparsity)
        if sum(counts) != n_pruned or any(
            not t.lowest <= c <= t.highest for t, c in zip(tensors, counts)
        ):
            raise ValueError(
                f"{self!r} returned pruned counts {list(counts)}, which must sum to "
                f"{n_pruned} and stay within each tensor's bounds "
                f"{[(t.lowest, t.highest) for t in tensors]}."
            )
        return [
            masking.keep_largest(t.score.ravel(), t.size - int(count))
            .reshape(np.shape(t.score))
            .astype(np.float32)
            for t, count in zip(tensors, counts)
        ]

    def get_config(self):
        return {}

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()


def _weight_tensor(layer, weight, score, mask, keep_units_connected, unit_axes):
    score = np.array(score, dtype=np.float64)  # A copy: safe to write.
    kept = np.asarray(mask) != 0
    masking.check_finite_scores(score, kept, f"a weight tensor of layer '{layer}'")
    score[~kept] = -np.inf
    reserved = 0
    if keep_units_connected:
        anchors = masking.unit_anchors(score, kept, unit_axes)
        score[anchors] = np.inf
        reserved = int(np.count_nonzero(anchors))
    lowest = int(np.count_nonzero(~kept))
    return WeightTensor(layer, weight * kept, score, lowest, score.size - reserved)


def layer_capacities(layers, masks, unit_axes=None, keep_units_connected=True):
    """`(sizes, capacities)`: per layer name, its weights and the most it may lose.

    A capacity is the size less one weight per output unit when
    `keep_units_connected` (units along the last `unit_axes` axes).

    Example:

    >>> layer_capacities(["a", "a", "b"], [np.ones((4, 2)), np.ones(3), np.ones((2, 5))])
    ({'a': 11, 'b': 10}, {'a': 9, 'b': 5})
    """
    unit_axes = unit_axes or [1] * len(masks)
    sizes, capacities = {}, {}
    for layer, mask, axes in zip(layers, masks, unit_axes):
        size = int(np.size(mask))
        units = masking.unit_count(np.shape(mask), axes) if keep_units_connected else 0
        sizes[layer] = sizes.get(layer, 0) + size
        capacities[layer] = capacities.get(layer, 0) + size - units
    return sizes, capacities


def distribute(n_pruned, tensors, shares, pinned=None):
    """Pruned counts whose *kept* counts are proportional to `shares`.

    Finds `lam` with `sum_i clip(lam * share_i, kmin_i, kmax_i) = N - n_pruned`
    (water-filling: tensors at a bound are held there, the others scale),
    then rounds by largest remainder, so the counts sum exactly to
    `n_pruned`. `kmin_i = size_i - highest_i` and `kmax_i = size_i - lowest_i`.

    Args:
        n_pruned: overall count to prune.
        tensors: list of `WeightTensor`.
        shares: non-negative floats, one per tensor.
        pinned: dict from tensor index to its pruned count, held fixed.

    Returns:
        A list of ints.
    """
    sizes = np.array([t.size for t in tensors], dtype=np.float64)
    kmin = sizes - np.array([t.highest for t in tensors], dtype=np.float64)
    kmax = sizes - np.array([t.lowest for t in tensors], dtype=np.float64)
    for index, count in (pinned or {}).items():
        kmin[index] = kmax[index] = sizes[index] - count
    shares = np.asarray(shares, dtype=np.float64)
    n_kept = sizes.sum() - n_pruned
    if not kmin.sum() <= n_kept <= kmax.sum():
        raise ValueError(
            f"Cannot prune {n_pruned} weights within the tensors' bounds: between "
            f"{int(sizes.sum() - kmax.sum())} and {int(sizes.sum() - kmin.sum())} can go."
        )
    low, high = 0.0, 1.0
    while np.clip(high * shares, kmin, kmax).sum() < n_kept and high < 1e300:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if np.clip(middle * shares, kmin, kmax).sum() < n_kept:
            low = middle
        else:
            high = middle
    real = np.clip(high * shares, kmin, kmax)
    kept = np.floor(real + 1e-9)
    kept = np.clip(kept, kmin, kmax)
    order = np.argsort(-(real - kept), kind="stable")  # Largest remainder first.
    while kept.sum() != n_kept:
        step = 1.0 if kept.sum() < n_kept else -1.0
        for index in order if step > 0 else order[::-1]:
            if kept.sum() == n_kept:
                break
            if kmin[index] <= kept[index] + step <= kmax[index]:
                kept[index] += step
    return [int(size - k) for size, k in zip(sizes, kept)]


def _rank_globally(tensors, scores, n_pruned):
    """Counts per tensor when the `n_pruned` lowest of all `scores` go."""
    flat = np.concatenate([np.ravel(score) for score in scores])
    keep = masking.keep_largest(flat, flat.size - n_pruned)
    bounds = np.cumsum([t.size for t in tensors])[:-1]
    return [int(part.size - np.count_nonzero(part)) for part in np.split(keep, bounds)]


@keras.saving.register_keras_serializable(package="keras_anneal")
class Uniform(Allocation):
    """Every tensor at the overall sparsity (today's `scope="layer"`).

    Kept counts proportional to tensor sizes, rounded by largest remainder
    so the overall count is exact: each tensor loses `floor(s * n)` or one
    more.
    """

    def pruned_counts(self, tensors, n_pruned, sparsity, final_sparsity):
        return distribute(n_pruned, tensors, [t.size for t in tensors])


@keras.saving.register_keras_serializable(package="keras_anneal")
class Global(Allocation):
    """The criterion's scores ranked across all tensors (FSA's ranking).

    Simple and often better than uniform (Blalock et al. 2020), but a layer
    whose scores are small as a whole can lose almost everything; the unit
    guard keeps it connected.
    """

    def pruned_counts(self, tensors, n_pruned, sparsity, final_sparsity):
        return _rank_globally(tensors, [t.score for t in tensors], n_pruned)


@keras.saving.register_keras_serializable(package="keras_anneal")
class ERK(Allocation):
    """Erdos-Renyi-Kernel: density proportional to `sum(shape) / prod(shape)`.

    Evci et al. 2020 (RigL), from Mocanu et al.'s Erdos-Renyi graphs: kept
    count `k_i = lam * sum(shape_i)`, `lam` set so the total is exact,
    tensors that would be denser than 1 kept dense (and the rest rescaled).
    Small tensors, like a first convolution, stay dense or nearly.
    """

    def pruned_counts(self, tensors, n_pruned, sparsity, final_sparsity):
        return distribute(n_pruned, tensors, [sum(np.shape(t.score)) for t in tensors])


def lamp_scores(weight, mask=None):
    """LAMP scores of one tensor: `w_u^2 / sum_{v >= u} w_v^2`.

    Lee et al., ICLR 2021. Indices are those of the weights sorted by
    magnitude (ascending, ties by position), so the largest weight scores
    1 and the scores are comparable across tensors. Pruned weights
    (`mask == 0`) count as zeros.

    Example:

    >>> lamp_scores(np.array([3.0, 1.0, 2.0]))  # 9/9, 1/14, 4/13.
    array([1.        , 0.07142857, 0.30769231])
    """
    squares = np.square(np.asarray(weight, dtype=np.float64)).ravel()
    if mask is not None:
        squares = squares * (np.asarray(mask).ravel() != 0)
    order = _ascending_order(squares)
    sorted_squares = squares[order]
    suffix = np.cumsum(sorted_squares[::-1])[::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        sorted_scores = np.where(suffix > 0, sorted_squares / suffix, 0.0)
    scores = np.empty_like(squares)
    scores[order] = sorted_scores
    return scores.reshape(np.shape(weight))


def _ascending_order(values):
    """`np.argsort(values, kind="stable")` of a flat array, about twice as fast.

    A plain (unstable) sort, then each run of equal values put in index
    order by one sort of the integer keys `run * n + index`: NumPy's stable
    sort of floats is the slow part of a LAMP update on large tensors.
    """
    n = values.size
    order = np.argsort(values)
    ordered = values[order]
    run = np.zeros(n, dtype=np.int64)
    np.cumsum(ordered[1:] != ordered[:-1], out=run[1:])
    return np.sort(run * n + order) % n


@keras.saving.register_keras_serializable(package="keras_anneal")
class LAMP(Allocation):
    """Layer-adaptive magnitude pruning (Lee et al., ICLR 2021), ranked globally.

    Each tensor's LAMP scores (`lamp_scores`) of its kept weights are ranked
    across tensors to decide the counts; the criterion then chooses which
    weights within each tensor (with `"magnitude"`, exactly LAMP).
    """

    def pruned_counts(self, tensors, n_pruned, sparsity, final_sparsity):
        scores = []
        for t in tensors:
            score = lamp_scores(t.weight)
            score[np.isneginf(t.score)] = -np.inf
            score[np.isposinf(t.score)] = np.inf
            scores.append(score)
        return _rank_globally(tensors, scores, n_pruned)


_EVERY_LAYER_NAMED = (
    " (a dict naming every layer must prune that many, within one weight per "
    "layer of rounding)"
)


@keras.saving.register_keras_serializable(package="keras_anneal")
class PerLayer(Allocation):
    """Some layers at their own sparsity; the others share the rest by `rest`.

    A layer given sparsity `d` is pruned to `d * s / s_final` when the plan
    is at overall `s` (so it reaches `d` when the plan ends); `None` keeps
    it dense. The layers not named share what is left, so that the overall
    count is exact, by the allocation `rest` (uniformly by default).

    Args:
        sparsities: dict from `Masked` layer name to a sparsity in [0, 1) or None.
        rest: the allocation among the layers not named: a name
            (`"uniform"`, `"global"`, `"erk"`, `"lamp"`) or an `Allocation`
            other than a `PerLayer`. Defaults to `"uniform"`.

    Example:

    >>> w = [np.ones((10, 10)), np.ones((10, 10))]
    >>> alloc = PerLayer({"first": None})
    >>> [int(m.sum()) for m in alloc.masks(w, [np.ones_like(x) for x in w], 0.25,
    ...                                    layers=["first", "second"])]
    [100, 50]

    Gale et al. 2019's advice (the first layer dense) with LAMP for the others:

    >>> w = [np.ones((3, 4)), np.arange(1.0, 41.0).reshape(8, 5), np.ones((5, 2))]
    >>> for rest in ("uniform", "lamp"):  # Weights kept per layer.
    ...     masks = PerLayer({"first": None}, rest=rest).masks(
    ...         w, [np.ones_like(x) for x in w], 0.5, layers=["first", "second", "third"])
    ...     print(rest, [int(m.sum()) for m in masks])
    uniform [12, 15, 4]
    lamp [12, 9, 10]
    """

    def __init__(self, sparsities, rest="uniform"):
        if not isinstance(sparsities, dict) or not sparsities:
            raise TypeError(
                "Argument `allocation` must map layer names to sparsities (or None). "
                f"Received: allocation={sparsities!r}"
            )
        checked = {}
        for name, value in sparsities.items():
            if value is not None:
                value = _validation.check_sparsity(f"allocation['{name}']", value)
            checked[str(name)] = value
        self.sparsities = checked
        self.rest = _rest_allocation(rest)

    def check(self, layer_sizes, final_sparsity, capacities=None):
        capacities = capacities or layer_sizes
        unknown = sorted(set(self.sparsities) - set(layer_sizes))
        if unknown:
            renamed = {name: f"masked_{name}" for name in unknown if f"masked_{name}" in layer_sizes}
            renamed.update({name: name.removeprefix("masked_") for name in unknown
                            if name.removeprefix("masked_") in layer_sizes})
            hint = (
                " `prune_model` names each wrapper 'masked_' + the layer's name, except "
                "those that make a Functional model's outputs, which keep it: use "
                + ", ".join(f"'{new}' for '{old}'" for old, new in renamed.items()) + "."
                if renamed else ""
            )
            raise ValueError(
                f"Argument `allocation` names layers that are not `Masked` layers of the "
                f"model: {unknown}. Expected some of: {sorted(layer_sizes)}.{hint} "
                f"Received: allocation={self.sparsities!r}"
            )
        total = sum(layer_sizes.values())
        target = masking.pruned_count(final_sparsity, total)
        pinned = sum(
            masking.pruned_count(value or 0.0, layer_sizes[name])
            for name, value in self.sparsities.items()
        )
        free = [name for name in layer_sizes if name not in self.sparsities]
        room = sum(capacities[name] for name in free)
        if free:
            reachable = pinned <= target <= pinned + room
        else:  # Every layer named: those with a sparsity absorb the rounding.
            rounding = sum(value is not None for value in self.sparsities.values())
            reachable = abs(target - pinned) < max(rounding, 1)
        if not reachable:
            raise ValueError(
                f"Argument `allocation` makes the overall target unreachable: it pins "
                f"{pinned} pruned weights and leaves at most {room} to the other layers "
                f"({free}), but final sparsity {final_sparsity:g} prunes {target} of "
                f"{total}{'' if free else _EVERY_LAYER_NAMED}. "
                f"Received: allocation={self.sparsities!r}"
            )

    def pruned_counts(self, tensors, n_pruned, sparsity, final_sparsity):
        ramp = sparsity / final_sparsity if final_sparsity > 0 else 0.0
        pinned = {}
        for index, t in enumerate(tensors):
            if t.layer in self.sparsities:
                wanted = masking.pruned_count((self.sparsities[t.layer] or 0.0) * ramp, t.size)
                pinned[index] = min(max(wanted, t.lowest), t.highest)
        if len(pinned) == len(tensors):  # Every layer named: their counts, made exact
            dense = {  # by the layers with a sparsity; those left dense stay so.
                index: t.lowest for index, t in enumerate(tensors)
                if self.sparsities[t.layer] is None
            }
            kept = [t.size - pinned[index] for index, t in enumerate(tensors)]
            return distribute(n_pruned, tensors, kept, dense)
        named = [i for i in pinned if self.sparsities[tensors[i].layer] is not None]
        _fit_pinned(pinned, tensors, n_pruned, named)
        free = [index for index in range(len(tensors)) if index not in pinned]
        shared = self.rest.pruned_counts(
            [tensors[index] for index in free], n_pruned - sum(pinned.values()),
            sparsity, final_sparsity,
        )
        counts = dict(pinned)
        counts.update(zip(free, shared))
        return [counts[index] for index in range(len(tensors))]

    def get_config(self):
        config = {"sparsities": dict(self.sparsities)}
        if self.rest != Uniform():  # Configs written before `rest` existed stay valid.
            config["rest"] = keras.saving.serialize_keras_object(self.rest)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("rest"), dict):
            config["rest"] = keras.saving.deserialize_keras_object(config["rest"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_anneal")
class Tolerance(Allocation):
    """Kept counts proportional to `n_l (1 - t_l)`: `t_l` a layer's tolerated sparsity.

    Built by `keras_anneal.SensitivityScan.allocation`; layers the scan did not cover
    count as tolerating the overall target.

    Args:
        tolerated: dict from layer name to a sparsity in [0, 1).

    Example:

    >>> w = [np.ones((10, 10)), np.ones((10, 10))]
    >>> alloc = Tolerance({"fragile": 0.0, "robust": 0.9})  # 91:9, but 10 units.
    >>> [int(m.sum()) for m in alloc.masks(w, [np.ones_like(x) for x in w], 0.5,
    ...                                    layers=["fragile", "robust"])]
    [90, 10]
    """

    def __init__(self, tolerated):
        self.tolerated = {
            str(name): _validation.check_sparsity(f"tolerated['{name}']", value)
            for name, value in dict(tolerated).items()
        }

    def pruned_counts(self, tensors, n_pruned, sparsity, final_sparsity):
        shares = [t.size * (1.0 - self.tolerated.get(t.layer, sparsity)) for t in tensors]
        return distribute(n_pruned, tensors, shares)

    def get_config(self):
        return {"tolerated": dict(self.tolerated)}


def _rest_allocation(rest):
    """`PerLayer`'s `rest`, checked: a named allocation or an `Allocation` object."""
    if isinstance(rest, str) and rest in _BY_NAME:
        return _BY_NAME[rest]()
    if isinstance(rest, Allocation) and not isinstance(rest, (PerLayer, _FromCallable)):
        return rest
    raise ValueError(
        f"Argument `rest` must be one of {sorted(set(_BY_NAME))} or an `Allocation` that "
        f"does not itself name layers. Received: rest={rest!r}"
    )


def _fit_pinned(pinned, tensors, n_pruned, adjustable):
    """Moves pinned counts (within their bounds) so the free tensors can make the rest.

    Each pinned count is floored on its own, so along a plan their sum can
    outrun `n_pruned` by a weight or two; the free tensors must still be able
    to keep what they have already pruned.
    """
    free = [t for index, t in enumerate(tensors) if index not in pinned]
    low = n_pruned - sum(t.highest for t in free)  # The least the pinned must hold.
    high = n_pruned - sum(t.lowest for t in free)  # The most they may hold.
    excess = sum(pinned.values()) - high
    for index in sorted(adjustable, key=lambda i: pinned[i] - tensors[i].lowest, reverse=True):
        if excess <= 0:
            break
        step = min(excess, pinned[index] - tensors[index].lowest)
        pinned[index] -= step
        excess -= step
    shortfall = low - sum(pinned.values())
    for index in sorted(adjustable, key=lambda i: tensors[i].highest - pinned[i], reverse=True):
        if shortfall <= 0:
            break
        step = min(shortfall, tensors[index].highest - pinned[index])
        pinned[index] += step
        shortfall -= step


class _FromCallable(Allocation):
    """A callable `f(sparsity, layer_sizes) -> {layer: sparsity}`, asked at each update.

    Its answer is used as a `PerLayer` allocation at that moment (no ramp);
    an empty dict means uniform.
    """

    def __init__(self, function):
        self.function = function

    def _per_layer(self, sparsity, layer_sizes):
        answer = self.function(sparsity, dict(layer_sizes))
        if not isinstance(answer, dict):
            raise TypeError(
                "Argument `allocation`, a callable, must return a dict from layer name to "
                f"sparsity (or None). Received: {answer!r} from {self.function!r}"
            )
        return PerLayer(answer) if answer else Uniform()

    def check(self, layer_sizes, final_sparsity, capacities=None):
        self._per_layer(final_sparsity, layer_sizes).check(
            layer_sizes, final_sparsity, capacities
        )

    def pruned_counts(self, tensors, n_pruned, sparsity, final_sparsity):
        sizes = {}
        for t in tensors:
            sizes[t.layer] = sizes.get(t.layer, 0) + t.size
        per_layer = self._per_layer(sparsity, sizes)
        return per_layer.pruned_counts(tensors, n_pruned, sparsity, sparsity)

    def get_config(self):
        raise NotImplementedError("A callable allocation has no config.")

    def __repr__(self):
        return f"allocation({self.function!r})"


_BY_NAME = {
    "uniform": Uniform,
    "layer": Uniform,
    "global": Global,
    "erk": ERK,
    "lamp": LAMP,
}


def resolve_scope(allocation, scope, default):
    """The allocation to use when `scope`, its former name, may be given.

    `scope` ("layer" or "global") replaces `allocation` when that is still
    the caller's `default`; given together with another allocation, it is
    an error.
    """
    if scope is None:
        return allocation
    _validation.check_choice("scope", scope, ("layer", "global"))
    if not (isinstance(allocation, str) and allocation == default):
        raise ValueError(
            "Pass either `allocation` or its former name `scope`, not both. "
            f"Received: allocation={allocation!r}, scope={scope!r}"
        )
    return scope


def get(identifier):
    """An allocation from a name, a dict of layer sparsities, a callable or a config.

    Args:
        identifier: an `Allocation`; `"uniform"` (or `"layer"`), `"global"`,
            `"erk"`, `"lamp"`; a dict from layer name to sparsity (or None);
            a callable `f(sparsity, layer_sizes) -> dict`; or a serialized
            config.

    Example:

    >>> get("erk"), get({"dense": None})
    (ERK(), PerLayer(sparsities={'dense': None}))
    """
    if isinstance(identifier, Allocation):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict):
        if "class_name" in identifier and "config" in identifier:
            allocation = keras.saving.deserialize_keras_object(identifier)
            if isinstance(allocation, Allocation):
                return allocation
        else:  # Each sparsity checked there, by its layer's name.
            return PerLayer(identifier)
    elif callable(identifier):
        return _FromCallable(identifier)
    raise ValueError(
        "Argument `allocation` must be one of "
        f"{sorted(set(_BY_NAME))}, a dict from layer name to sparsity, a callable, or "
        f"a `keras_anneal.allocation.Allocation`. Received: allocation={identifier!r}"
    )
