"""`compact`: delete dead units, so a pruned model is physically smaller.

A unit (a Dense unit, a convolution filter, both also under
`TimeDistributed`, an Embedding's output dimension) is dead when every
weight into it is pruned, or every weight out of it. `compact` rebuilds the
model without such units: the producing layer loses its output units, the
layers in between (element-wise activations, Dropout, BatchNormalization,
pooling, also under `TimeDistributed`, Flatten, channel-keeping Reshapes,
residual adds, concatenations) lose the
channels, and each consuming layer loses the matching inputs. Channels that a residual add or any element-wise
merge couples go only when they are dead on every branch
(`keras_anneal.channel_dependencies`). A unit with no inputs but a bias
still outputs a constant; that constant is folded into its consumers'
biases where that is exact (a Dense consumer, a convolution with
`padding="valid"`, or a constant 0), otherwise the unit stays.

Sequential and Functional models are compacted (nested Sequential models of
a Sequential are opened, so the result is flat, unless that would repeat a
layer name). Units that a layer it does
not know reads, or constants it cannot fold, stay, and a `UserWarning`
names the layers that kept dead units: never silently wrong.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_anneal import _validation
from keras_anneal import masking
from keras_anneal._cloning import clone_graph
from keras_anneal.channel_dependencies import ChannelDependencies
from keras_anneal.channel_dependencies import is_producer
from keras_anneal.channel_dependencies import is_source
from keras_anneal.channel_dependencies import kernel_layer
from keras_anneal.channel_dependencies import writes_units
from keras_anneal import optimizer_state
from keras_anneal.layers import Masked
from keras_anneal.models import unwrapped


def compact(model, carry_optimizer=False):
    """A plain Keras model without the dead units of `model`.

    Its outputs equal the masked model's (within float rounding); Dense
    layers have fewer units and convolutions fewer filters where whole units
    were pruned (see `AnnealedPruning(granularity="unit")`). Layers whose
    dead units could not be removed are named in a `UserWarning`.

    With `carry_optimizer=True`, training goes on in the smaller model where
    it stopped: the result is compiled as `model` was, and its optimizer
    starts from `model.optimizer`'s state (step counter, learning rate, and
    each slot, e.g. Adam's moments, sliced like its weight;
    `keras_anneal.optimizer_state`; Adafactor's factored moments, not shaped
    like their weights, raise a `ValueError`). Pruned weights left inside
    kept units are plain zeros there, free to grow back: a `UserWarning`
    says how many.

    Args:
        model: a Sequential or Functional `keras.Model`, with `Masked`
            layers or already stripped.
        carry_optimizer: compile the result like `model` and carry its
            optimizer state over. `model` must be compiled. Defaults to
            `False`: the result is not compiled.

    Returns:
        A new `keras.Model` with no keras-anneal layer in it.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential([keras.Input((4,)),
    ...     keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]))
    >>> hidden = model.layers[0]
    >>> mask = np.ones((4, 8)); mask[:, :5] = 0
    >>> hidden.set_masks([mask])
    >>> compact(model).layers[0].units
    3
    >>> model.compile(optimizer="adam", loss="mse")
    >>> _ = model.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0)
    >>> small = compact(model, carry_optimizer=True)  # Compiled, Adam's state carried.
    >>> int(small.optimizer.iterations), tuple(small.optimizer.variables[2].shape)
    (1, (4, 3))
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Argument `model` must be a keras.Model. Received: model={model!r} "
            f"of type {type(model).__name__}"
        )
    carry_optimizer = _validation.check_bool("carry_optimizer", carry_optimizer)
    if carry_optimizer and getattr(model, "optimizer", None) is None:
        raise ValueError(
            "Argument `carry_optimizer=True` needs a compiled model that has an optimizer. "
            f"Received: model {model.name!r}, which is not compiled"
        )
    _warn_of_units_it_does_not_remove(model)
    plain = unwrapped(model)
    chain = _sequential_chain(plain) if isinstance(plain, keras.Sequential) else None
    graph = plain if chain is None else _called(plain, chain)
    specs = _specs(ChannelDependencies(graph))
    if chain is not None:
        compacted = _rebuilt_sequential(plain, chain, specs)
    else:
        compacted = _rebuilt_functional(plain, specs)
    if carry_optimizer:
        optimizer_state.carry_optimizer(
            model, plain, compacted,
            lambda layer, values: _sliced(layer, specs[layer.name], values, fold=False))
        _warn_of_zeros_left(model, compacted)
    return compacted


def _warn_of_units_it_does_not_remove(model):
    """Names the masked layers of one kernel, not Dense, a plain convolution
    or an Embedding (a transposed or depthwise convolution), with dead units:
    `compact` keeps them, and their zeros, as they are."""
    left = {}
    for layer in model._flatten_layers():
        if not isinstance(layer, Masked) or writes_units(layer.layer) or len(layer.masks) != 1:
            continue
        mask, axes = layer.get_masks()[0], layer.unit_axes[0]
        units = masking.unit_count(mask.shape, axes)
        if not units:
            continue
        if axes == masking.UNITS_BEFORE_LAST:
            mask = np.swapaxes(mask, -1, -2)
        dead = int(np.sum(~mask.reshape(-1, units).any(axis=0)))
        if dead:
            left[layer.name] = f"{dead} of {units} ({type(layer.layer).__name__})"
    if left:
        warnings.warn(
            "compact removes the units of Dense layers, plain convolutions (also under "
            "TimeDistributed) and Embeddings only: these "
            f"layers keep their dead units, as zeros: {left}",
            UserWarning,
            stacklevel=3,
        )


def _warn_of_zeros_left(model, compacted):
    """Warns when pruned weights stay inside kept units (training revives them)."""
    masked = {layer.layer.name for layer in model._flatten_layers() if isinstance(layer, Masked)}
    left = sum(int(np.sum(ops.convert_to_numpy(layer.weights[0]) == 0))
               for layer in compacted._flatten_layers()
               if layer.name in masked and writes_units(layer))
    if left:
        warnings.warn(
            f"compact: {left} pruned weights inside kept units are plain zeros in the "
            "compacted model, and training it lets them grow back: zeros of "
            "weight-level pruning, or the weights of dead units that had to stay "
            "(named in another warning).",
            UserWarning,
            stacklevel=3,
        )


def _specs(dependencies):
    """Per layer name, the slicing `_transform` applies; warns about what stays."""
    removed, constants, kept_dead = dependencies.removal()

    def keep(ids):
        kept = np.array([dependencies.find(c) not in removed for c in ids])
        return None if kept.all() else kept

    specs = {}
    for layer, ids in dependencies.producers:
        if keep(ids) is not None:
            specs.setdefault(layer.name, {})["out"] = keep(ids)
    for index, reader in enumerate(dependencies.readers):
        spec = specs.setdefault(reader.layer.name, {})
        if keep(reader.channels) is not None:
            spec["in"] = (keep(reader.channels), reader.flat_shape)
        if index in constants:
            spec["fold"] = constants[index]
    for layer, ids in dependencies.sliced:
        if keep(ids) is not None:
            specs.setdefault(layer.name, {})["channels"] = keep(ids)
    if kept_dead:
        warnings.warn(
            "compact: dead units of these layers were kept (a layer that compaction does not "
            "handle reads them, a constant it cannot fold, or a tensor's last channel): "
            f"{kept_dead}",
            UserWarning,
            stacklevel=3,
        )
    return specs


def _transform(layer, spec):
    """`(config, weights)` of `layer` after the slicing `spec` asks for."""
    config = layer.get_config()
    core = kernel_layer(layer)
    wrapped = core is not layer  # A `TimeDistributed` Dense or convolution.
    if wrapped:
        config["layer"].pop("build_config", None)  # Built anew, on the narrower input.
    if writes_units(layer) and spec.get("out") is not None:
        size = ("units" if isinstance(core, keras.layers.Dense)
                else "output_dim" if is_source(layer) else "filters")
        (config["layer"]["config"] if wrapped else config)[size] = int(spec["out"].sum())
    elif isinstance(layer, keras.layers.Reshape) and "channels" in spec:
        config["target_shape"] = (*config["target_shape"][:-1], int(spec["channels"].sum()))
    values = [np.asarray(ops.convert_to_numpy(w)) for w in layer.weights]
    return config, _sliced(layer, spec, values)


def _sliced(layer, spec, values, fold=True):
    """`values` (one array per weight of `layer`) sliced as `spec` asks.

    With `fold=False` no constant is added to the bias: the slicing of
    anything shaped like the weights (an optimizer's moments).
    """
    values = list(values)
    if is_source(layer) and spec.get("out") is not None:
        values[0] = values[0][:, spec["out"]]  # Embeddings: (tokens, output dimensions).
    elif is_producer(layer) and spec:
        kernel = values[0]
        if "in" in spec:
            keep, flat_shape = spec["in"]
            if flat_shape is not None:
                kernel = kernel[np.broadcast_to(keep, flat_shape).reshape(-1)]
            else:
                kernel = kernel[..., keep, :]
        out_keep = spec.get("out")
        if out_keep is not None:
            kernel = kernel[..., out_keep]
        values[0] = kernel
        if kernel_layer(layer).use_bias:
            bias = values[1] + spec.get("fold", 0.0) if fold else values[1]
            values[1] = (bias[out_keep] if out_keep is not None else bias).astype(values[1].dtype)
    elif "channels" in spec:
        if isinstance(layer, keras.layers.BatchNormalization):
            values = [v[spec["channels"]] for v in values]
        elif not isinstance(layer, keras.layers.Reshape):
            # PReLU: slopes per channel, unless shared across channels.
            values = [v[..., spec["channels"]] if v.shape[-1] == spec["channels"].size else v
                      for v in values]
    return values


def _opened(layers):
    """`layers` with each nested Sequential model replaced by its own layers."""
    opened = []
    for layer in layers:
        if isinstance(layer, keras.Sequential):
            opened += _opened(layer.layers)
        elif not isinstance(layer, keras.layers.InputLayer):
            opened.append(layer)
    return opened


def _sequential_chain(plain):
    """The layers of a Sequential model, nested Sequential models opened
    where that keeps every layer name unique (else left whole)."""
    opened = _opened(plain.layers)
    if len({layer.name for layer in opened}) == len(opened):
        return opened
    return [layer for layer in plain.layers if not isinstance(layer, keras.layers.InputLayer)]


def _called(plain, chain):
    """A Functional graph of the opened layers of a Sequential model."""
    inputs = keras.Input(batch_shape=tuple(plain.inputs[0].shape), dtype=plain.inputs[0].dtype)
    x = inputs
    for layer in chain:
        x = layer(x)
    return keras.Model(inputs, x)


def _rebuilt_sequential(plain, chain, specs):
    new_layers, weights = [], []
    for layer in chain:  # Layers it leaves as they are are reused (`plain` is a copy).
        if specs.get(layer.name):
            config, values = _transform(layer, specs[layer.name])
            new_layers.append(type(layer).from_config(config))
            weights.append(values)
        else:
            new_layers.append(layer)
            weights.append(None)
    inputs = keras.Input(batch_shape=tuple(plain.inputs[0].shape), dtype=plain.inputs[0].dtype)
    compacted = keras.Sequential([inputs, *new_layers], name=plain.name)
    for layer, values in zip(new_layers, weights):
        if values is not None:
            layer.set_weights(values)
    return compacted


def _rebuilt_functional(plain, specs):
    transformed = {name: _transform(plain.get_layer(name), spec)
                   for name, spec in specs.items() if spec}

    def rebuilt(layer):  # Layers it leaves as they are are reused (`plain` is a copy).
        if not isinstance(layer, keras.layers.Layer) or layer.name not in transformed:
            return layer
        return type(layer).from_config(transformed[layer.name][0])

    compacted = clone_graph(plain, rebuilt, recursive=False)
    for layer in compacted.layers:
        if layer.name in transformed:
            layer.set_weights(transformed[layer.name][1])
    return compacted
