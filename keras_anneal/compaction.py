"""`compact`: delete dead units, so a pruned model is physically smaller.

A unit (a Dense unit, a convolution filter) is dead when every weight into
it is pruned, or every weight out of it. `compact` rebuilds the model
without such units: the producing layer loses its output units, the layers
in between (activations, Dropout, BatchNormalization, pooling, Flatten)
lose the channels, and the consuming layer loses the matching inputs. A
unit with no inputs but a bias still outputs a constant; that constant,
carried through the layers in between, is folded into the consumer's bias
(exactly, for a Dense consumer or a convolution with `padding="valid"`, or
when the constant is 0; otherwise the unit stays).

Sequential models and chains are compacted whole (nested Sequential models
are opened: the result is flat). In Functional graphs with branches, each
layer whose units reach a single consumer through per-channel layers is
compacted (the inner convolution of a residual block); units that feed a
residual add, a concatenation or a layer it does not know stay, and a
warning names the layers with dead units it kept: never silently wrong.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_anneal.models import strip

_PRODUCERS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_EXCLUDED_PRODUCERS = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
# Layers that act on each channel alone (or leave channels as they are).
_PER_CHANNEL = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.PReLU,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.BatchNormalization,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
)
# Identities at inference: the only layers allowed between Flatten and Dense.
_IDENTITY_AT_INFERENCE = (
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)
_ACROSS_UNITS = ("softmax", "log_softmax")  # Activations that mix the units.


def _mixes_units(layer):
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") in _ACROSS_UNITS


def compact(model):
    """A plain Keras model without the dead units of `model`.

    Its outputs equal the masked model's (within float rounding); Dense
    layers have fewer units and convolutions fewer filters where whole units
    were pruned (see `AnnealedPruning(granularity="unit")`). Layers whose
    units could not be removed are named in a `UserWarning`.

    Args:
        model: a Sequential or Functional `keras.Model`, with `Masked`
            layers or already stripped.

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
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Argument `model` must be a keras.Model. Received: model={model!r} "
            f"of type {type(model).__name__}"
        )
    plain = strip(model)
    chain = _chain(plain)
    if chain is not None:
        return _rebuild(plain, chain, _plan(chain))
    return _compact_graph(plain)


def _segment(producer, outputs):
    """`[producer, *per-channel layers, consumer]` if the producer's units reach
    exactly one consumer, through layers used once, else None."""
    segment, current = [producer], producer
    while True:
        nodes = current._inbound_nodes
        if len(nodes) != 1 or id(nodes[0].output_tensors[0]) in outputs:
            return None
        following = [node.operation for node in current._outbound_nodes]
        if len(following) != 1:
            return None
        current = following[0]
        if len(current._inbound_nodes) != 1 or len(current._inbound_nodes[0].input_tensors) != 1:
            return None
        segment.append(current)
        if _is_producer(current):
            return segment
        if not isinstance(current, _PER_CHANNEL + (keras.layers.Flatten,)):
            return None


def _compact_graph(plain):
    """A Functional graph with branches: each producer whose units reach one
    consumer through per-channel layers (e.g. the first convolution of a
    residual block) is compacted; the rest (adds, concatenations) stays."""
    outputs = {id(tensor) for tensor in plain.outputs}
    specs = {}  # Layer name -> {"out": keep, "in": (keep, flat shape), "channels": keep, "fold": delta}
    left = []
    for layer in plain.layers:
        if not _is_producer(layer):
            continue
        segment = _segment(layer, outputs)
        if segment is None:
            kernel = ops.convert_to_numpy(layer.kernel)
            dead = ~np.any(kernel.reshape(-1, kernel.shape[-1]) != 0, axis=0)
            if dead.any() and not any(id(node.output_tensors[0]) in outputs
                                      for node in layer._inbound_nodes):
                left.append(layer.name)  # Dead units it cannot follow (an add, a concat).
            continue
        plan = _plan(segment)
        left += plan["left"]
        keep = plan["keep"].get(0)
        if keep is None:
            continue
        specs.setdefault(layer.name, {})["out"] = keep
        flat_shape = None
        for middle in segment[1:-1]:
            if isinstance(middle, keras.layers.Flatten):
                flat_shape = tuple(middle.input.shape[1:])
            elif flat_shape is None:
                specs.setdefault(middle.name, {})["channels"] = keep
        consumer = specs.setdefault(segment[-1].name, {})
        consumer["in"] = (keep, flat_shape)
        if len(segment) - 1 in plan["folds"]:
            consumer["fold"] = plan["folds"][len(segment) - 1]
    transformed = {layer.name: _transform(layer, specs.get(layer.name, {})) for layer in plain.layers}

    def rebuilt(layer):
        if layer.name not in transformed:  # An operator node (`x + y`): stateless.
            return layer
        return type(layer).from_config(transformed[layer.name][0])

    compacted = keras.models.clone_model(plain, clone_function=rebuilt)
    for layer in compacted.layers:
        if layer.name in transformed and layer.weights:
            layer.set_weights(transformed[layer.name][1])
    if left:
        warnings.warn(
            "compact: dead units of these layers were kept (a layer in between that "
            f"compaction does not handle, or a constant it cannot fold): {left}",
            UserWarning,
            stacklevel=3,
        )
    return compacted


def _transform(layer, spec):
    """`(config, weights)` of `layer` after the slicing `spec` asks for."""
    config = layer.get_config()
    values = [np.asarray(ops.convert_to_numpy(w)) for w in layer.weights]
    if _is_producer(layer) and spec:
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
            config["units" if isinstance(layer, keras.layers.Dense) else "filters"] = int(
                out_keep.sum()
            )
        values[0] = kernel
        if layer.use_bias:
            bias = values[1] + spec.get("fold", 0.0)
            values[1] = (bias[out_keep] if out_keep is not None else bias).astype(values[1].dtype)
    elif "channels" in spec:
        if isinstance(layer, keras.layers.BatchNormalization):
            values = [v[spec["channels"]] for v in values]
        elif isinstance(layer, keras.layers.PReLU):
            values = [v[..., spec["channels"]] for v in values]
    return config, values


def _chain(model):
    """The model's layers in order if it is one chain, else None.

    Nested Sequential models are opened: their layers join the chain.
    """
    if isinstance(model, keras.Sequential):
        return _opened(model.layers)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    previous = model.inputs[0]
    for layer in layers:
        nodes = layer._inbound_nodes
        if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
            return None
        if nodes[0].input_tensors[0] is not previous:
            return None
        previous = nodes[0].output_tensors[0]
    return _opened(layers) if previous is model.outputs[0] else None


def _opened(layers):
    """`layers` with each nested Sequential model replaced by its own layers."""
    opened = []
    for layer in layers:
        if isinstance(layer, keras.Sequential):
            opened += _opened(layer.layers)
        elif not isinstance(layer, keras.layers.InputLayer):
            opened.append(layer)
    return opened


def _is_producer(layer):
    return isinstance(layer, _PRODUCERS) and not isinstance(layer, _EXCLUDED_PRODUCERS) and (
        getattr(layer, "groups", 1) == 1 and getattr(layer, "data_format", "channels_last")
        == "channels_last"
    )


def _plan(chain):
    """Per producer index: the boolean array of its units to keep, and folds.

    Returns a dict `index -> keep` and a dict `consumer index -> bias delta`,
    plus the layers left as they are, under "kept".
    """
    keep, folds, left = {}, {}, []
    producers = [i for i, layer in enumerate(chain) if _is_producer(layer)]
    for index in producers:
        layer = chain[index]
        units = layer.kernel.shape[-1]
        between, consumer = [], None
        for j in range(index + 1, len(chain)):
            if _is_producer(chain[j]):
                consumer = j
                break
            between.append(j)
        if consumer is None:
            continue  # The last producer makes the outputs: its units stay.
        flat_at = next(
            (j for j in between if isinstance(chain[j], keras.layers.Flatten)), None
        )
        flattened = flat_at is not None
        unsupported = [
            chain[j] for j in between
            if not isinstance(chain[j], _PER_CHANNEL + (keras.layers.Flatten,))
            or (flattened and j > flat_at and not isinstance(chain[j], _IDENTITY_AT_INFERENCE))
            or _mixes_units(chain[j])
        ]
        if _mixes_units(layer):
            unsupported.append(layer)
        target = chain[consumer]
        if unsupported or (flattened and not isinstance(target, keras.layers.Dense)):
            left.append(layer.name)
            continue
        kernel = ops.convert_to_numpy(layer.kernel)
        next_kernel = ops.convert_to_numpy(target.kernel)
        if flattened:  # Rows of the Dense kernel: (positions..., channels) flattened.
            outgoing = np.moveaxis(next_kernel.reshape(-1, units, next_kernel.shape[-1]), 1, 0)
        else:
            outgoing = np.moveaxis(next_kernel, -2, 0)
        no_output = ~np.any(outgoing.reshape(units, -1) != 0, axis=1)
        no_input = ~np.any(kernel.reshape(-1, units) != 0, axis=0)
        constant = no_input & ~no_output
        removable = no_output.copy()
        if constant.any():
            delta = _folded_bias(chain, index, between, consumer, constant)
            if delta is not None:
                removable |= constant
                folds[consumer] = folds.get(consumer, 0.0) + delta
        if removable.all():
            removable[np.argmax(~no_output) if (~no_output).any() else 0] = False
        if removable.any():
            keep[index] = ~removable
        if constant.any() and not (removable & constant).any():
            left.append(layer.name)
    return {"keep": keep, "folds": folds, "left": left}


def _folded_bias(chain, index, between, consumer, constant):
    """The consumer's bias change that replaces the constant units, or None."""
    layer, target = chain[index], chain[consumer]
    shape = (1,) + tuple(layer.output.shape[1:])
    bias = ops.convert_to_numpy(layer.bias) if layer.use_bias else np.zeros(constant.size)
    bias = np.where(constant, bias, 0.0)
    x = layer.activation(ops.convert_to_tensor(np.broadcast_to(bias, shape).astype("float32")))

    def only_constant(x):  # Other channels are zero; BatchNormalization shifts them.
        return ops.where(ops.convert_to_tensor(np.broadcast_to(constant, tuple(x.shape))), x, 0.0)

    x = only_constant(x)
    for j in between:
        if isinstance(chain[j], keras.layers.Flatten):
            x = ops.reshape(only_constant(x), (1, -1))
        else:
            x = chain[j](x, training=False)
    if not any(isinstance(chain[j], keras.layers.Flatten) for j in between):
        x = only_constant(x)
    if not np.any(ops.convert_to_numpy(x)):  # The units output zeros: nothing to fold.
        return np.zeros(target.kernel.shape[-1], dtype="float32")
    if not isinstance(target, keras.layers.Dense) and target.padding != "valid":
        return None  # Zero padding would make the constant map uneven at the borders.
    if isinstance(target, keras.layers.Dense):
        out = ops.matmul(x, target.kernel)
    else:
        out = target.convolution_op(x, target.kernel)
    out = ops.convert_to_numpy(out)
    delta = out.reshape(-1, out.shape[-1])[0]
    if not target.use_bias and np.any(delta != 0):
        return None  # A constant to fold, and no bias to fold it into.
    return delta


def _rebuild(plain, chain, plan):
    keep, folds = plan["keep"], plan["folds"]
    channels = None  # Boolean keep-array of the current tensor's last axis, if narrowed.
    flat_shape = None
    specs = []
    for index, layer in enumerate(chain):
        spec = {}
        if _is_producer(layer):
            if channels is not None:
                spec["in"] = (channels, flat_shape)
            if keep.get(index) is not None:
                spec["out"] = keep[index]
            if index in folds:
                spec["fold"] = folds[index]
            channels, flat_shape = keep.get(index), None
        elif isinstance(layer, keras.layers.Flatten):
            if channels is not None:
                flat_shape = tuple(layer.input.shape[1:])
        elif channels is not None and flat_shape is None:
            spec["channels"] = channels
        specs.append(spec)
    transformed = [_transform(layer, spec) for layer, spec in zip(chain, specs)]
    new_layers = [type(layer).from_config(config) for layer, (config, _) in zip(chain, transformed)]
    weights = [values for _, values in transformed]
    inputs = keras.Input(shape=tuple(plain.inputs[0].shape[1:]), dtype=plain.inputs[0].dtype)
    if isinstance(plain, keras.Sequential):
        compacted = keras.Sequential([inputs, *new_layers], name=plain.name)
    else:
        x = inputs
        for layer in new_layers:
            x = layer(x)
        compacted = keras.Model(inputs, x, name=plain.name)
    for layer, values in zip(new_layers, weights):
        layer.set_weights(values)
    if plan["left"]:
        warnings.warn(
            "compact: dead units of these layers were kept (a layer in between that "
            f"compaction does not handle, or a constant it cannot fold): {plan['left']}",
            UserWarning,
            stacklevel=3,
        )
    return compacted
