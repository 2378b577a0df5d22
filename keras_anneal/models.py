"""Model-level entry points: wrap (`prune_model`), unwrap (`strip`), report."""

import dataclasses
import numbers
import warnings

import keras

from keras_anneal import _validation
from keras_anneal._cloning import clone_graph
from keras_anneal._cloning import compile_like
from keras_anneal._cloning import is_graph_model
from keras_anneal import drop_connect as noise
from keras_anneal import masking
from keras_anneal.layers import SUPPORTED_LAYERS
from keras_anneal.layers import Masked
from keras_anneal.layers import declares_prunable_weights
from keras_anneal.layers import is_prunable
from keras_anneal.layers import prunable_variables
from keras_anneal.layers import quantized_modes


def masked_layers(model):
    """Every `Masked` layer inside `model`, nested and subclassed models included.

    Args:
        model: a `keras.Model` (or any layer).

    Returns:
        The `Masked` layers, each once, in the order Keras tracks them.

    Example:

    >>> block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="inner")])
    >>> model = keras.Sequential([keras.Input((4,)), block, keras.layers.Dense(2, name="head")])
    >>> [layer.name for layer in masked_layers(prune_model(model))]
    ['masked_inner', 'masked_head']
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "Argument `model` must be a `keras.Model` or a layer. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, Masked)
    ]


def _check_model(model, function):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Argument `model` of `{function}` must be a `keras.Model`. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"Argument `model` of `{function}` must be built, so that its weights "
            "exist: call it once on sample inputs (or give it an `Input`). "
            f"Received: model '{model.name}' of class {type(model).__name__}, not built"
        )


def _all_layers(model):
    return model._flatten_layers(include_self=False, recursive=True)


def _cloned_layers(model):
    """The layers `clone_model(recursive=True)` visits: nested graph models' too,
    not the sublayers of a custom layer (which is wrapped whole)."""
    for layer in model.layers:
        if is_graph_model(layer):
            yield from _cloned_layers(layer)
        else:
            yield layer


def _output_layers(model):
    """Ids of the layers whose outputs are outputs of `model` or of a Functional
    model nested in it: Keras keys losses, metrics and targets by their names
    (`output_names`; a Sequential model has none)."""
    found = set()
    for graph in [model, *_all_layers(model)]:
        if is_graph_model(graph) and not isinstance(graph, keras.Sequential):
            found.update(id(tensor._keras_history[0]) for tensor in graph.outputs)
    return found


def _inbound_arguments(layer):
    """Fresh symbolic copies of the arguments of `layer`'s first call, if any."""
    nodes = getattr(layer, "_inbound_nodes", None)
    if not nodes:
        return None
    arguments = nodes[0].arguments

    def fresh(value):
        if isinstance(value, keras.KerasTensor):
            return keras.KerasTensor(value.shape, value.dtype, sparse=value.sparse)
        return value

    return keras.tree.map_structure(fresh, (arguments.args, arguments.kwargs))


def _copy_layer(layer, weights=None, template=None):
    """A new layer with `layer`'s config, built alike, holding its weights.

    Built from its build config; a layer whose sublayers are built by its
    first call (a custom Transformer block without `build`) is built by
    calling it on symbolic inputs shaped like those of its first call in
    the graph (that of `template`, the layer standing for it, if given).
    """
    if not isinstance(layer, keras.layers.Layer):
        return layer  # An operation node of the graph (`x + y`, a `keras.ops` call).
    try:
        copy = _from_config(layer)
    except Exception as error:
        if not layer.weights:  # A `Lambda` of a Python function: nothing to copy,
            return layer  # so the pruned model shares it, as it shares `x + y`.
        raise _not_copyable(layer, f"rebuilding it from its config failed ({error})") from error
    if not layer.weights:
        return copy
    build_config = layer.get_build_config()
    try:
        if build_config:
            with warnings.catch_warnings():
                # A layer with no `build` warns that it is not really built:
                # it is built below by a symbolic call, as the user's graph did.
                warnings.filterwarnings("ignore", message=r"`build\(\)` was called on layer")
                copy.build_from_config(build_config)
            if "input_shape" in build_config and not copy.get_build_config():
                # A subclassed model built from its config forgets the shape it
                # was built with; keep it, so the copy can be saved and copied.
                copy._build_shapes_dict = {"input_shape": build_config["input_shape"]}
        if len(copy.weights) != len(layer.weights):
            arguments = _inbound_arguments(template or layer)
            if arguments is not None:
                copy(*arguments[0], **arguments[1])
    except Exception as error:
        raise _not_copyable(layer, f"building the copy failed ({error})") from error
    if len(copy.weights) != len(layer.weights):
        raise _not_copyable(
            layer,
            f"rebuilt from its config it holds {len(copy.weights)} weights instead of "
            f"{len(layer.weights)}",
        )
    copy.set_weights(layer.get_weights() if weights is None else weights)
    return copy


def _from_config(layer):
    """`cls.from_config(layer.get_config())`, or, for a custom layer whose
    constructor takes no `**kwargs` (as in many Keras examples), the
    constructor called with the arguments Keras recorded for it."""
    try:
        return layer.__class__.from_config(layer.get_config())
    except Exception:
        arguments = getattr(layer, "_auto_config", None)
        if arguments is None:
            raise
        try:
            return layer.__class__(**arguments.config)
        except Exception:
            pass
        raise


def _not_copyable(layer, reason):
    reason = " ".join(reason.split())
    if len(reason) > 240:
        reason = reason[:240] + "…)"
    return ValueError(
        f"Cannot copy layer '{layer.name}' ({type(layer).__name__}): {reason}. "
        "Give the layer a `get_config()` that returns its constructor arguments (and a "
        "`build()` that creates its weights), or prune without copying: "
        "`keras_anneal.prune_model(model, inplace=True)` wraps the model's own layers, "
        "so the pruned model shares their weights with the original."
    )


_NOT_PRUNABLE_BY_DESIGN = (  # Scales, shifts and slopes per element or channel: no connections.
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.UnitNormalization,
    keras.layers.Normalization,
    keras.layers.PReLU,
)


def _unprunable_weights(layer):
    """Paths of trainable weights in `layer` that no mask will cover."""
    covered = {id(variable) for _, variable in prunable_variables(layer)}
    skipped = []
    for sublayer in layer._flatten_layers(include_self=True, recursive=True):
        if isinstance(sublayer, _NOT_PRUNABLE_BY_DESIGN):
            continue
        own = [w for w in sublayer._trainable_variables if id(w) not in covered]
        if own and not isinstance(sublayer, keras.Model) and not _unmasked_by_design(sublayer, own):
            skipped += [w.path for w in own]
    return skipped


def _unmasked_by_design(layer, weights):
    """Whether `weights` are left unmasked on purpose: the biases of a
    prunable layer, or any weight but those a user's layer declares
    prunable (with `register_prunable_layer` or `get_prunable_weights`)."""
    if not is_prunable(layer):
        return False
    return declares_prunable_weights(layer) or all("bias" in w.name for w in weights)


def _layer_selector(model, layers):
    """Validates `layers`; returns a predicate (should this layer be wrapped?)
    and the layer names it selects by name."""
    if layers is None:
        return is_prunable, set()
    if isinstance(layers, (str, type)):
        layers = [layers]
    if not isinstance(layers, (list, tuple)):
        raise TypeError(
            "Argument `layers` must be a list of layer names (str) or layer classes. "
            f"Received: layers={layers!r} of type {type(layers).__name__}"
        )
    if not layers:
        raise ValueError(
            "Argument `layers` must select at least one layer, or be None for all. "
            f"Received: layers={layers!r}"
        )
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
    all_layers = list(_all_layers(model))
    by_name = {layer.name: layer for layer in all_layers}
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
        if not any(isinstance(layer, cls) and is_prunable(layer) for layer in all_layers)
    ]
    if unsupported:
        raise ValueError(
            f"Argument `layers` selects layers with no prunable weight: {unsupported}. "
            f"Supported: {[cls.__name__ for cls in SUPPORTED_LAYERS]}, layers defining "
            "`get_prunable_weights()`, and layers holding those"
        )
    classes = tuple(classes)

    def selected(layer):
        return layer.name in names or isinstance(layer, classes)

    return selected, names


def prune_model(model, layers=None, inplace=False, drop_connect=0.0, drop_connect_groups=1,
                drop_connect_noise="bernoulli"):
    """A copy of `model` with its prunable layers wrapped in `Masked`.

    The copy has the same architecture and weights, with all masks at one
    (nothing pruned yet). It is not compiled. The original is not changed.

    Sequential and Functional models are rebuilt layer by layer: operator
    nodes (`x + y`, `keras.ops` calls), shared layers and nested models are
    kept as they are; each prunable layer is wrapped, including those that
    hold prunable sublayers (`MultiHeadAttention`, a custom Transformer
    block), whose inner kernels are all masked by one `Masked`. A subclassed
    model is wrapped whole: the result is `keras.Sequential([Masked(copy)])`.
    Each wrapper is named `"masked_" + layer.name`, except in a Functional
    model the wrappers of the layers that make its outputs, which keep the
    layer's name: Keras keys losses, metrics, targets and their logs by
    output name, and they work on the pruned model unchanged.
    Layers with trainable weights that no mask covers (other than biases and
    normalization layers) are named in one warning.

    Args:
        model: a built `keras.Model`: Sequential, Functional (nested models
            are handled too) or subclassed.
        layers: which layers to wrap: `None` for every prunable layer, or
            a list of layer names and/or layer classes. Defaults to `None`.
        inplace: if True, the model's own layers are wrapped instead of
            copies, for layers that cannot be rebuilt from their config: the
            pruned model then shares their variables with the original (whose
            graph is unchanged). Defaults to `False`.
        drop_connect: DropConnect rate of the wrapped layers (see `Masked`):
            a float in [0, 1) for all of them, or a dict from layer name or
            layer class to its rate (the others get none), e.g.
            `{keras.layers.Dense: 0.3}` to regularize the dense layers as
            Dropout would. Defaults to 0.0 (no noise).
        drop_connect_groups: independent DropConnect draws per training
            batch in each noisy layer (see `Masked`). Defaults to 1.
        drop_connect_noise: how each noisy layer draws (see `Masked`):
            `"bernoulli"` or `"gaussian"` (per example; Dense layers and plain
            convolutions only).
            Defaults to `"bernoulli"`.

    Returns:
        The new `keras.Model`.

    Raises:
        TypeError: if `model` is not a `keras.Model`, `layers` holds
            something other than names and classes, or `drop_connect` is
            neither a float nor such a dict.
        ValueError: if `model` is not built or holds no prunable weight,
            if `layers` names an unknown layer or one with no prunable
            weight, or if a layer cannot be copied (the message says how to
            make it copyable, or to pass `inplace=True`), or if a rate of
            `drop_connect` is outside [0, 1) or its dict names a layer that
            is not wrapped, if `drop_connect_groups` is below 1 (or
            above 1 with no `drop_connect`), or if `drop_connect_noise` is
            unknown or `"gaussian"` for a noisy layer that is neither a Dense
            nor a plain convolution.

    Example:

    >>> inputs = keras.Input((4,))
    >>> x = keras.layers.Dense(4)(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(2)(x + inputs))  # An operator residual.
    >>> [type(layer).__name__ for layer in prune_model(model).layers]
    ['InputLayer', 'Masked', 'Masked']
    """
    _check_model(model, "prune_model")
    inplace = _validation.check_bool("inplace", inplace)
    selected, names = _layer_selector(model, layers)
    rate_of = _drop_connect_rates(model, drop_connect, selected)
    drop_connect_groups = _validation.check_drop_connect_groups(drop_connect_groups, drop_connect)
    drop_connect_noise = _validation.check_choice(
        "drop_connect_noise", drop_connect_noise, noise.KINDS)
    if not any(is_prunable(layer) for layer in _all_layers(model)) and not is_prunable(model):
        raise ValueError(
            f"Argument `model` holds no prunable weight. Received: model '{model.name}' with "
            f"layers {[type(layer).__name__ for layer in _all_layers(model)]}"
        )
    skipped = {}
    wrapped = set()

    # A wrapper that makes an output keeps the layer's name: losses, metrics,
    # targets and logs keyed by output name work on the pruned model unchanged.
    outputs = _output_layers(model)

    def masked(copy, original):
        name = {"name": original.name} if id(original) in outputs else {}
        rate = rate_of(original)  # Noiseless layers take the defaults: there is nothing to draw.
        if not rate:
            return Masked(copy, **name)
        return Masked(copy, drop_connect=rate, drop_connect_groups=drop_connect_groups,
                      drop_connect_noise=drop_connect_noise, **name)

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # An operation node: stateless, shared as it is.
        wrap = not isinstance(layer, Masked) and selected(layer) and is_prunable(layer)
        copy = layer if inplace else _copy_layer(layer)
        if layers is None and not isinstance(layer, Masked):
            unmasked = _unprunable_weights(layer)
            if unmasked:
                skipped[layer.name] = unmasked
        if wrap:
            wrapped.add(layer.name)
        return masked(copy, layer) if wrap else copy

    if is_graph_model(model):
        pruned = clone_graph(model, clone)
    else:
        _warn_of_lost_training_logic(model)
        inner = model if inplace else _copy_layer(model)
        wrapper = masked(inner, model)
        wrapper.build()  # The model is built: its masks can be made now.
        pruned = keras.Sequential([wrapper], name=model.name)
        input_shape = (inner.get_build_config() or {}).get("input_shape")
        if input_shape is not None:
            pruned.build(input_shape)
        unmasked = _unprunable_weights(model) if layers is None else []
        if unmasked:
            skipped[model.name] = unmasked
    if layers is not None:
        unreached = sorted(names - wrapped)
        if unreached or not wrapped:
            raise ValueError(
                "Argument `layers` selects layers that prune_model cannot wrap on their "
                f"own: {unreached or layers!r} (a nested model, or a layer inside a custom "
                "layer). Select the enclosing layer, or the nested model's own layers, "
                f"instead. Received: layers={layers!r}"
            )
    if layers is not None and is_graph_model(model):
        _warn_of_unreached_classes(model, layers, wrapped)
    if skipped:
        listed = "; ".join(f"'{name}': {paths}" for name, paths in skipped.items())
        warnings.warn(
            "prune_model left these trainable weights unmasked: no registered prunable "
            f"weight covers them ({listed}). Define `get_prunable_weights()` on their "
            "layer or call `keras_anneal.register_prunable_layer` to prune them.",
            UserWarning,
            stacklevel=2,
        )
    return pruned


def _warn_of_unreached_classes(model, layers, wrapped):
    """Warns of layers of a selected class that sit inside a layer left unwrapped."""
    layers = [layers] if isinstance(layers, (str, type)) else layers
    classes = tuple(item for item in layers if isinstance(item, type))
    unreached = {}
    for outer in _cloned_layers(model):
        if outer.name in wrapped or isinstance(outer, Masked):
            continue  # Its sublayers are covered by its masks.
        inner = [layer.name for layer in outer._flatten_layers(include_self=False, recursive=True)
                 if classes and isinstance(layer, classes)]
        if inner:
            unreached[outer.name] = inner
    if unreached:
        listed = "; ".join(f"{inner} inside '{outer}'" for outer, inner in unreached.items())
        warnings.warn(
            f"prune_model(layers={[getattr(item, '__name__', item) for item in layers]}) "
            f"wrapped none of these layers of a selected class: {listed}. A layer inside a "
            "custom layer is masked through its enclosing layer: add that layer's name "
            "to `layers` to prune them.",
            UserWarning,
            stacklevel=3,
        )


def _drop_connect_rates(model, drop_connect, selected):
    """Validates `drop_connect`; returns layer -> its rate."""
    if not isinstance(drop_connect, dict):
        if isinstance(drop_connect, bool) or not isinstance(drop_connect, numbers.Real):
            raise TypeError(
                "Argument `drop_connect` must be a float in [0, 1) or a dict from layer "
                f"names or classes to such floats. Received: drop_connect={drop_connect!r} "
                f"of type {type(drop_connect).__name__}"
            )
        rate = _validation.check_rate("drop_connect", drop_connect)
        return lambda layer: rate
    rates = {}
    for key, value in drop_connect.items():
        is_class = isinstance(key, type) and issubclass(key, keras.layers.Layer)
        if not (isinstance(key, str) or is_class):
            raise TypeError(
                "Argument `drop_connect` must map layer names (str) or layer classes to "
                f"rates. Received: key {key!r} of type {type(key).__name__}"
            )
        rates[key] = _validation.check_rate(f"drop_connect[{key!r}]", value)
    candidates = list(_cloned_layers(model)) if is_graph_model(model) else [model]
    wrapped = [layer for layer in candidates if selected(layer) and is_prunable(layer)]
    unmatched = [
        key if isinstance(key, str) else key.__name__
        for key in rates
        if not any(_matches(key, layer) for layer in wrapped)
    ]
    if unmatched:
        raise ValueError(
            f"Argument `drop_connect` names layers that prune_model does not wrap: {unmatched}. "
            f"The wrapped layers are: {sorted(layer.name for layer in wrapped)}"
        )

    def rate_of(layer):
        # A name is more specific than a class: it is looked up first.
        by_name = [rate for key, rate in rates.items()
                   if isinstance(key, str) and _matches(key, layer)]
        by_class = [rate for key, rate in rates.items() if _matches(key, layer)]
        return (by_name or by_class or [0.0])[0]

    return rate_of


def _matches(key, layer):
    """Whether a layer name (str) or layer class `key` designates `layer`."""
    return layer.name == key if isinstance(key, str) else isinstance(layer, key)



def _warn_of_lost_training_logic(model):
    """A subclassed model is wrapped in a Sequential, whose `fit` runs
    Keras' own steps: say which of the model's overrides it will not run."""
    overridden = [
        name for name in ("train_step", "test_step", "predict_step", "compute_loss")
        if getattr(type(model), name, None) is not getattr(keras.Model, name)
    ]
    if overridden:
        warnings.warn(
            f"prune_model wraps the subclassed model '{model.name}' in a "
            f"`keras.Sequential`, whose `fit` does not run its own {overridden}. "
            "To keep them, build the model with its layers wrapped in "
            "`keras_anneal.Masked` yourself (e.g. `self.dense = Masked(Dense(8))`) "
            "and train it as it is.",
            UserWarning,
            stacklevel=3,
        )


def strip(model, inplace=False):
    """A plain model with every `Masked` layer replaced by its inner layer.

    The masks are baked in: pruned weights are exactly 0.0 in the result, and
    its predictions equal those of the masked model. A model that
    `prune_model` made from a subclassed one comes back as
    `keras.Sequential([copy of the subclassed model])`. A compiled `model`
    gives a copy compiled the same way, with a new optimizer (or, where the
    compile config cannot be rebuilt, an uncompiled one, with a warning).

    Args:
        model: a `keras.Model` that `prune_model` returned, or any
            Sequential or Functional model.
        inplace: if True, the masks are baked into the wrapped layers' own
            variables and those layers are reused (for models pruned with
            `inplace=True`, whose layers may not be copyable). Defaults to
            `False`.

    Returns:
        The new `keras.Model`, with no keras-anneal layer in it.

    Raises:
        TypeError: if `model` is not a `keras.Model`, or is a subclassed
            model (which only its own code can rebuild: prune it with
            `prune_model`, which wraps it whole, and strip what it returns).
        ValueError: if a layer cannot be copied (pass `inplace=True`).

    Example:

    >>> model = prune_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    >>> [type(layer).__name__ for layer in strip(model).layers]
    ['Dense']
    """
    stripped = unwrapped(model, inplace)
    if model.compiled:
        try:
            compile_like(model, stripped)
        except (TypeError, ValueError) as error:
            warnings.warn(
                f"strip: the stripped copy of '{model.name}' is not compiled: its compile "
                f"config could not be rebuilt ({error}). Compile it yourself.",
                UserWarning,
                stacklevel=2,
            )
    return stripped


def unwrapped(model, inplace=False):
    """`strip(model, inplace)`, not compiled."""
    _check_model(model, "strip")
    inplace = _validation.check_bool("inplace", inplace)
    if not is_graph_model(model):
        raise TypeError(
            "`strip` rebuilds Sequential and Functional models (those `prune_model` "
            f"returns), not subclassed ones. Received: model of class {type(model).__name__}. "
            "Prune a subclassed model with `keras_anneal.prune_model(model)`, which "
            "wraps it whole, and strip what it returns."
        )

    for layer in masked_layers(model):  # Before anything changes.
        layer.check_not_quantized()

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer
        if not isinstance(layer, Masked):
            return layer if inplace else _copy_layer(layer)
        baked = {
            id(weight): value
            for weight, value in zip(layer.prunable_weights, layer.get_masked_weights())
        }
        if inplace:
            for weight in layer.prunable_weights:
                weight.assign(baked[id(weight)])
            return layer.layer
        weights = [
            baked[id(variable)] if id(variable) in baked
            else keras.ops.convert_to_numpy(variable)
            for variable in layer.layer.weights
        ]
        return _copy_layer(layer.layer, weights, template=layer)

    return clone_graph(model, clone)


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    """Pruned and total prunable weights of one `Masked` layer.

    Example:

    >>> LayerSparsity("masked_dense", pruned=90, total=100).sparsity
    0.9
    """

    name: str
    pruned: int
    total: int

    @property
    def sparsity(self):
        return self.pruned / self.total if self.total else 0.0


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-layer and overall sparsity; the overall figure is weighted by weight count.

    `sparsity_report(model)` builds one; `print` shows it as a table.

    Example:

    >>> report = SparsityReport((LayerSparsity("a", 90, 100), LayerSparsity("b", 0, 300)))
    >>> report.sparsity, report.to_dict()["layers"]["a"]["sparsity"]
    (0.225, 0.9)
    >>> print(report)  # doctest: +NORMALIZE_WHITESPACE
    layer        pruned       total  sparsity
    a                90         100    90.00%
    b                 0         300     0.00%
    overall          90         400    22.50%
    """

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

    A model without `Masked` layers (one that `strip` or `compact` returned)
    is read from its weights: the exact zeros among those `prune_model`
    would mask, per layer. It counts every prunable layer, so a model
    pruned with `prune_model(..., layers=...)` reports a lower overall
    sparsity once stripped: the layers left dense count too.

    Args:
        model: a `keras.Model`, holding `Masked` layers at any depth or none.

    Returns:
        A `SparsityReport`; `print` it for a table, or use `.sparsity`,
        `.layers` and `.to_dict()`.

    Example:

    >>> model = prune_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    >>> sparsity_report(model).sparsity
    0.0
    >>> model.layers[0].set_masks([np.array([[1, 0]] * 4)])
    >>> sparsity_report(model).sparsity, sparsity_report(strip(model)).sparsity
    (0.5, 0.5)
    """
    masked = masked_layers(model)
    for layer in masked:
        layer.check_not_quantized()
    if masked:
        rows = [LayerSparsity(layer.name, *masking.count_pruned(layer.get_masks()))
                for layer in masked]
    else:
        plain = list(_cloned_layers(model)) if is_graph_model(model) else [model]
        quantized = quantized_modes(owner for layer in plain
                                    for owner, _ in prunable_variables(layer))
        if quantized:
            raise ValueError(
                f"sparsity_report reads float weights; these layers of '{model.name}' are "
                f"quantized: {quantized}. Their codes are no weights (int4 packs two in a byte, "
                "with a zero point that a pruned weight need not map to): report the model "
                "before `quantize`."
            )
        rows = []
        for layer in plain:
            weights = [keras.ops.convert_to_numpy(v) for _, v in prunable_variables(layer)]
            if weights:
                rows.append(LayerSparsity(layer.name, *masking.count_pruned(
                    [w != 0 for w in weights])))
    return SparsityReport(tuple(rows))
