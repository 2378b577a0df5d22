"""`prune`: set the masks of a trained model in one shot, with any criterion."""

import keras
from keras import ops

from keras_anneal import _validation
from keras_anneal import criteria
from keras_anneal._backend import sync_backend_state
from keras_anneal.models import masked_layers
from keras_anneal.models import sparsity_report


def prune(model, criterion="magnitude", sparsity=0.5, scope="layer"):
    """Prunes a model's `Masked` layers in one shot, after training.

    Keeps, in each prunable weight tensor (`scope="layer"`) or across all of
    them (`scope="global"`), the weights of largest criterion score, so that
    exactly `floor(s * n)` of `n` weights are pruned; weights already pruned
    stay pruned. Every mask is computed before any is set, so bad input
    leaves the model as it was.

    Args:
        model: a `keras.Model` holding `Masked` layers (see `prune_model`).
        criterion: a `keras_anneal.criteria.PruningCriterion` or its name
            (`"magnitude"`, `"random"`, `"largest"`). Defaults to `"magnitude"`.
        sparsity: target sparsity in [0, 1). Defaults to 0.5.
        scope: `"layer"` or `"global"`. Defaults to `"layer"`.

    Returns:
        The `SparsityReport` of the pruned model.

    Raises:
        TypeError: if `model` is not a Keras model.
        ValueError: on a bad `criterion`, `sparsity` or `scope`, a model with
            no `Masked` layer, or non-finite weights.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(10)]))
    >>> prune(model, "magnitude", sparsity=0.75).pruned
    30
    """
    criterion = criteria.get(criterion)
    sparsity = _validation.check_sparsity("sparsity", sparsity)
    scope = _validation.check_choice("scope", scope, ("layer", "global"))
    layers = masked_layers(model)
    if not layers:
        raise ValueError(
            "Argument `model` has no `keras_anneal.Masked` layer to prune. Wrap its "
            f"layers first: `keras_anneal.prune_model(model)`. Received: model '{model.name}'"
        )
    sync_backend_state(model)
    weights = [ops.convert_to_numpy(w) for layer in layers for w in layer.prunable_weights]
    masks = [mask for layer in layers for mask in layer.get_masks()]
    new_masks = iter(criterion.masks(weights, masks, sparsity, scope))
    for layer, chosen in [(layer, [next(new_masks) for _ in layer.masks]) for layer in layers]:
        layer.set_masks(chosen)
    return sparsity_report(model)
