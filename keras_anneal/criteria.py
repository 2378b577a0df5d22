"""Pruning criteria: which weights go.

The schedule says how many weights are pruned, the criterion says which: it
gives every weight a score, larger meaning more worth keeping, and
the allocation (`keras_anneal.allocation`) keeps the largest scores with
exact counts and deterministic ties. A new criterion overrides one method,
`scores`, like `compute_mask` of torch's `BasePruningMethod`.

Every criterion has a plain function form, `criterion.masks(weights, masks,
sparsity)`, and takes part in `AnnealedPruning(..., criterion=...)` by
instance, by name (`"magnitude"`, `"random"`, `"largest"`) or by config.
"""

import numpy as np

import keras

from keras_anneal import _validation
from keras_anneal import allocation as allocation_module
from keras_anneal._config import ConfigMixin


class PruningCriterion(ConfigMixin):
    """Base class of the pruning criteria: override `scores`.

    Example:

    >>> class Smallest(PruningCriterion):  # Keeps the smallest |w| instead.
    ...     def scores(self, weights, masks, step=0):
    ...         return [-np.abs(w) for w in weights]
    >>> Smallest().masks([np.array([0.1, 3.0, 2.0])], [np.ones(3)], 0.5)[0]
    array([1., 0., 1.], dtype=float32)
    """

    #: Whether the criterion needs calibration data (`keras_anneal.prune(..., data=x)`).
    needs_data = False

    def scores(self, weights, masks, step=0):
        """One float array per weight tensor: larger means more worth keeping.

        Args:
            weights: list of NumPy arrays, the prunable weights.
            masks: list of their current 0/1 masks.
            step: the optimizer step, for criteria that draw random numbers
                (so that a resumed run draws the same ones).

        Returns:
            A list of arrays shaped like `weights`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement `scores(weights, masks, step)`."
        )

    def masks(self, weights, masks, sparsity, allocation="uniform", step=0, **options):
        """New 0/1 masks at overall `sparsity`, keeping the weights of largest score.

        Already pruned weights stay pruned; counts are exact (see
        `keras_anneal.allocation`).

        Args:
            weights, masks: lists of NumPy arrays, the weights and their masks.
            sparsity: overall target in [0, 1).
            allocation: how the count is split among tensors: a name
                (`"uniform"`/`"layer"`, `"global"`, `"erk"`, `"lamp"`), a dict
                of layer sparsities, a callable, or an `Allocation`.
            step: the optimizer step (for random criteria).
            **options: `layers`, `final_sparsity`, `keep_units_connected`,
                `unit_axes`, as in `keras_anneal.allocation.Allocation.masks`.
        """
        sparsity = _validation.check_sparsity("sparsity", sparsity)
        allocation = allocation_module.get(allocation)
        _check_finite(weights)
        weights = [np.asarray(w) for w in weights]
        scores = self.scores(weights, masks, step)
        return allocation.masks(scores, masks, sparsity, weights=weights, **options)

    def get_config(self):
        return {}

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()


def _check_finite(weights):
    for index, weight in enumerate(weights):
        weight = np.asarray(weight)
        if not np.all(np.isfinite(weight)):
            raise ValueError(
                f"Weight tensor {index} holds {int(np.count_nonzero(~np.isfinite(weight)))} "
                "non-finite values (NaN or inf): masks are never computed from them. "
                "Received: a diverged weight. Lower the learning rate or clip gradients."
            )


@keras.saving.register_keras_serializable(package="keras_anneal")
class Magnitude(PruningCriterion):
    """Keeps the weights of largest magnitude: `score = |w|`.

    The classic criterion (Han et al. 2015; Zhu & Gupta 2017; FSA, Barbu et
    al. 2017). Removing the smallest weights in small steps is the most
    stable way to prune, and so the one that regularizes least (Bartoldson et
    al., NeurIPS 2020).

    Example:

    >>> Magnitude().masks([np.array([0.1, -3.0, 2.0, 0.5])], [np.ones(4)], 0.5)[0]
    array([0., 1., 1., 0.], dtype=float32)
    """

    def scores(self, weights, masks, step=0):
        return [np.abs(w) for w in weights]


@keras.saving.register_keras_serializable(package="keras_anneal")
class Random(PruningCriterion):
    """Keeps weights at random: `score ~ U(0, 1)`, drawn anew at each step.

    The draws depend only on `(seed, step)`, so a run resumed from a
    checkpoint prunes the same weights as an uninterrupted one. A baseline
    for the other criteria, and the regrowth rule of SET (Mocanu et al. 2018).

    Args:
        seed: int seed. Defaults to 0.

    Example:

    >>> mask = Random(seed=1).masks([np.ones(10)], [np.ones(10)], 0.3)[0]
    >>> int(mask.sum())
    7
    """

    def __init__(self, seed=0):
        self.seed = _validation.check_step("seed", seed)

    def scores(self, weights, masks, step=0):
        rng = np.random.default_rng([self.seed, int(step)])
        return [rng.random(np.shape(w)) for w in weights]

    def get_config(self):
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_anneal")
class LargestMagnitude(PruningCriterion):
    """Prunes the weights of *largest* magnitude: `score = -|w|`.

    Instability-seeking pruning: Bartoldson, Barbu & Erlebacher (2018, arXiv
    1805.01930) found that pruning large weights, not small ones, generalized
    better than Dropout on CIFAR-10; Bartoldson et al. (NeurIPS 2020) explain
    it: the bigger the accuracy drop right after a pruning step, the more the
    step acts like noise injection and the better the final generalization.
    Best used for temporary removal (`TemporaryRemoval`) or early in a plan.

    Example:

    >>> LargestMagnitude().masks([np.array([0.1, -3.0, 2.0, 0.5])], [np.ones(4)], 0.5)[0]
    array([1., 0., 0., 1.], dtype=float32)
    """

    def scores(self, weights, masks, step=0):
        return [-np.abs(w) for w in weights]


@keras.saving.register_keras_serializable(package="keras_anneal")
class LayerwiseOBS(PruningCriterion):
    """Layer-wise Optimal Brain Surgeon (Dong et al. 2017), for one-shot pruning.

    Per Dense layer, from its inputs on calibration data: the Hessian of the
    layer's reconstruction error `H = (1/n) sum x~ x~^T` (`x~` = input with a
    1 for the bias), damped; removes the kept weights of least saliency
    `w_q^2 / (2 [H^-1]_qq)` in rounds of `refresh`, each removal moving its
    unit's weights by `-(w_q / [H^-1]_qq) H^-1[:, q]` before the next round
    ranks them; finally sets each unit's surviving weights (and bias) to the
    exact least-squares reconstruction of its original output from its kept
    inputs. The changed weights are written to the wrapped layer. See
    `keras_anneal.brain_surgeon` for the cost.

    Use it with `keras_anneal.prune(model, LayerwiseOBS(), sparsity, data=x)`
    on Dense and Conv2D layers; a convolution is treated as a Dense layer
    over its input patches (`x~` = a patch of `k_h k_w c_in` values).

    Args:
        damping: added to H's diagonal, times its mean diagonal, > 0.
            Defaults to 1e-3.
        refresh: removals per round, > 0 (Braunstein et al.: 2,000). Defaults to 2000.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(1)]))
    >>> x = np.random.default_rng(0).normal(size=(256, 6))
    >>> before = model.predict(x, verbose=0)
    >>> keras_anneal.prune(model, LayerwiseOBS(), 0.25, data=x).sparsity  # Survivors refitted.
    0.25
    >>> bool(np.abs(model.predict(x, verbose=0) - before).mean() < np.abs(before).mean())
    True
    """

    needs_data = True

    def __init__(self, damping=1e-3, refresh=2000):
        self.damping = _validation.check_positive("damping", damping)
        self.refresh = _validation.check_step("refresh", refresh, positive=True)

    def scores(self, weights, masks, step=0):
        raise TypeError(
            "LayerwiseOBS needs each layer's inputs: use it with "
            "`keras_anneal.prune(model, LayerwiseOBS(), sparsity, data=x_calibration)`."
        )

    def prune_layer(self, kernel, bias, mask, inputs, sparsity):
        """`(mask, kernel, bias)` of one Dense layer after L-OBS."""
        from keras_anneal import brain_surgeon

        return brain_surgeon.prune_dense(
            kernel, bias, mask, inputs, sparsity, self.damping, self.refresh
        )

    def get_config(self):
        return {"damping": self.damping, "refresh": self.refresh}


@keras.saving.register_keras_serializable(package="keras_anneal")
class NeuronSignificance(PruningCriterion):
    """N2PS (Augasta & Kathirvalavakumar 2011): whole hidden units, least significant first.

    Per hidden Dense layer, from its activations on calibration data, the
    normalized significance `s_j = mean_p |a_pj| * sum_k |v_jk|` (`v`: the
    unit's outgoing weights), see `keras_anneal.unit_pruning`; the
    `floor(s * units)` least significant units go whole: every weight into
    and out of them is masked and their bias set to 0. The last Dense layer
    (the outputs) keeps its units. `sparsity` is thus a fraction of units;
    `prune` returns the weight sparsity reached.

    Use it with `keras_anneal.prune(model, "n2ps", sparsity, data=x_calibration)`
    on a chain of `Masked` Dense layers (an MLP).

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(2)]))
    >>> x = np.random.default_rng(0).normal(size=(64, 6))
    >>> keras_anneal.prune(model, NeuronSignificance(), 0.5, data=x).sparsity  # 4 units of 8.
    0.5
    >>> int(model.layers[0].get_masks()[0].any(axis=0).sum())  # Units left in the hidden layer.
    4
    """

    needs_data = True

    def scores(self, weights, masks, step=0):
        raise TypeError(
            "NeuronSignificance needs each layer's activations: use it with "
            "`keras_anneal.prune(model, 'n2ps', sparsity, data=x_calibration)`."
        )


_BY_NAME = {
    "magnitude": Magnitude,
    "random": Random,
    "largest": LargestMagnitude,
    "obs": LayerwiseOBS,
    "n2ps": NeuronSignificance,
}


def get(identifier):
    """A criterion from an instance, a name or a config dict.

    Args:
        identifier: a `PruningCriterion`, one of `"magnitude"`, `"random"`,
            `"largest"`, `"obs"` or `"n2ps"` (one-shot only), or a dict from
            `keras.saving.serialize_keras_object`.

    Example:

    >>> get("largest")
    LargestMagnitude()
    """
    if isinstance(identifier, PruningCriterion):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict):
        criterion = keras.saving.deserialize_keras_object(identifier)
        if isinstance(criterion, PruningCriterion):
            return criterion
    expected = (
        "Argument `criterion` must be a `keras_anneal.criteria.PruningCriterion`, "
        f"one of {sorted(_BY_NAME)}, or its serialized config. "
    )
    if isinstance(identifier, (str, dict)):  # The right type, an unknown value.
        raise ValueError(expected + f"Received: criterion={identifier!r}")
    hint = (
        " (a number: the sparsity? Pass it by name, e.g. `prune(model, sparsity=0.5)`)"
        if isinstance(identifier, (int, float)) and not isinstance(identifier, bool) else ""
    )
    raise TypeError(
        expected + f"Received: criterion={identifier!r} of type "
        f"{type(identifier).__name__}{hint}"
    )
