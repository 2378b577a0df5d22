"""Model-level entry points: wrap (`prune_model`), unwrap (`strip`), report."""

import dataclasses

import keras

from keras_anneal import masking
from keras_anneal.layers import SUPPORTED_LAYERS
from keras_anneal.layers import Masked
from keras_anneal.layers import is_prunable


def masked_layers(model):
    """Every `Masked` layer inside `model`, nested and subclassed models included.

    Args:
        model: a `keras.Model` (or any layer).

    Returns:
        The `Masked` layers, each once, in the order Keras tracks them.
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "Argument `model` must be a `keras.Model`. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, Masked)
    ]


def _is_graph_model(model):
    """Sequential or Functional: a model `keras.models.clone_model` can rebuild."""
    return isinstance(model, keras.Sequential) or any(
        cls.__name__ == "Functional" for cls in type(model).__mro__
    )


def _check_graph_model(model, function):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Argument `model` of `{function}` must be a `keras.Model`. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    if not _is_graph_model(model):
        raise TypeError(
            f"`{function}` rebuilds Sequential and Functional models, not "
            f"subclassed ones. Received: model of class {type(model).__name__}. "
            "In a subclassed model, wrap layers with `keras_anneal.Masked` in "
            "`__init__`; the callbacks and `sparsity_report` find them there."
        )


def _all_layers(model):
    return model._flatten_layers(include_self=False, recursive=True)


def _copy_layer(layer, weights=None):
    """A new layer with `layer`'s config, built alike, holding its weights."""
    copy = layer.__class__.from_config(layer.get_config())
    if not layer.weights:
        return copy
    build_config = layer.get_build_config()
    if not build_config:
        raise ValueError(
            f"Cannot copy the weights of layer '{layer.name}': it records no build "
            "shape. Build the model on its inputs (e.g. call it on a batch) first."
        )
    copy.build_from_config(build_config)
    copy.set_weights(layer.get_weights() if weights is None else weights)
    return copy


def _layer_selector(model, layers):
    """Validates `layers` and returns a predicate: should this layer be wrapped?"""
    if layers is None:
        return is_prunable
    if isinstance(layers, (str, type)):
        layers = [layers]
    names, classes = set(), []
    for item in layers:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, type) and issubclass(item, keras.layers.Layer):
            classes.append(item)
        else:
            raise TypeError(
                "Argument `layers` must hold layer names (str) or layer classes. "
                f"Received: {item!r} of type {type(item).__name__} in layers={layers!r}"
            )
    by_name = {layer.name: layer for layer in _all_layers(model)}
    unknown = sorted(names - by_name.keys())
    if unknown:
        raise ValueError(
            f"Argument `layers` names layers that are not in the model: {unknown}. "
            f"The model's layers are: {sorted(by_name)}"
        )
    unsupported = sorted(name for name in names if not is_prunable(by_name[name]))
    unsupported += [
        cls.__name__
        for cls in classes
        if not (issubclass(cls, SUPPORTED_LAYERS) or callable(getattr(cls, "get_prunable_weights", None)))
    ]
    if unsupported:
        raise ValueError(
            f"Argument `layers` selects layers with no prunable weight: {unsupported}. "
            f"Supported: {[cls.__name__ for cls in SUPPORTED_LAYERS]}"
        )
    classes = tuple(classes)

    def selected(layer):
        return layer.name in names or isinstance(layer, classes)

    return selected


def prune_model(model, layers=None):
    """A copy of `model` with its prunable layers wrapped in `Masked`.

    The copy has the same architecture and weights, with all masks at one
    (nothing pruned yet). It is not compiled. The original is not changed.

    Args:
        model: a Sequential or Functional `keras.Model` (nested models are
            handled too).
        layers: which layers to wrap: `None` for every supported layer, or
            a list of layer names and/or layer classes. Defaults to `None`.

    Returns:
        The new `keras.Model`.

    Raises:
        TypeError: if `model` is not a Sequential or Functional model, or
            `layers` holds something other than names and classes.
        ValueError: if `layers` names an unknown layer or one with no
            prunable weight.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> pruned = prune_model(model)
    >>> [type(layer).__name__ for layer in pruned.layers]
    ['Masked']
    """
    _check_graph_model(model, "prune_model")
    selected = _layer_selector(model, layers)

    def clone(layer):
        copy = _copy_layer(layer)
        if isinstance(layer, Masked) or not selected(layer):
            return copy
        return Masked(copy)

    return keras.models.clone_model(model, clone_function=clone, recursive=True)


def strip(model):
    """A plain copy of `model` with every `Masked` layer replaced by its inner layer.

    The masks are baked in: pruned weights are exactly 0.0 in the copy, and
    the copy's predictions equal those of the masked model.

    Args:
        model: a Sequential or Functional `keras.Model`.

    Returns:
        The new `keras.Model`, with no keras-anneal layer in it.

    Raises:
        TypeError: if `model` is not a Sequential or Functional model.

    Example:

    >>> model = prune_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    >>> [type(layer).__name__ for layer in strip(model).layers]
    ['Dense']
    """
    _check_graph_model(model, "strip")

    def clone(layer):
        if not isinstance(layer, Masked):
            return _copy_layer(layer)
        baked = {
            id(weight): value
            for weight, value in zip(layer.prunable_weights, layer.get_masked_weights())
        }
        weights = [
            baked[id(variable)] if id(variable) in baked
            else keras.ops.convert_to_numpy(variable)
            for variable in layer.layer.weights
        ]
        return _copy_layer(layer.layer, weights)

    return keras.models.clone_model(model, clone_function=clone, recursive=True)


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    """Pruned and total prunable weights of one `Masked` layer."""

    name: str
    pruned: int
    total: int

    @property
    def sparsity(self):
        return self.pruned / self.total if self.total else 0.0


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-layer and overall sparsity; the overall figure is weighted by weight count."""

    layers: tuple

    @property
    def pruned(self):
        return sum(layer.pruned for layer in self.layers)

    @property
    def total(self):
        return sum(layer.total for layer in self.layers)

    @property
    def sparsity(self):
        return self.pruned / self.total if self.total else 0.0

    def to_dict(self):
        """A JSON-ready dict: `{"layers": {name: {...}}, "pruned", "total", "sparsity"}`."""
        return {
            "layers": {
                layer.name: {
                    "pruned": layer.pruned,
                    "total": layer.total,
                    "sparsity": layer.sparsity,
                }
                for layer in self.layers
            },
            "pruned": self.pruned,
            "total": self.total,
            "sparsity": self.sparsity,
        }

    def __str__(self):
        width = max([len("overall")] + [len(layer.name) for layer in self.layers])
        lines = [f"{'layer':<{width}}  {'pruned':>10}  {'total':>10}  sparsity"]
        for row in self.layers + (LayerSparsity("overall", self.pruned, self.total),):
            lines.append(
                f"{row.name:<{width}}  {row.pruned:>10,}  {row.total:>10,}  {row.sparsity:8.2%}"
            )
        return "\n".join(lines)


def sparsity_report(model):
    """Pruned weights per `Masked` layer and overall.

    Args:
        model: a `keras.Model` holding `Masked` layers, at any depth.

    Returns:
        A `SparsityReport`; `print` it for a table, or use `.sparsity`,
        `.layers` and `.to_dict()`.

    Example:

    >>> model = prune_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    >>> sparsity_report(model).sparsity
    0.0
    """
    rows = [
        LayerSparsity(layer.name, *masking.count_pruned(layer.get_masks()))
        for layer in masked_layers(model)
    ]
    return SparsityReport(tuple(rows))
