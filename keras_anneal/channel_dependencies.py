"""Which channels of a Keras graph are one channel, and which of them can go.

`compact` asks this module what to delete. Every tensor's last axis is a
list of channel ids; layers that act on each channel alone (activations,
Dropout, BatchNormalization, pooling, a Reshape that keeps the last axis)
pass the list on, a residual add (or any element-wise merge, `x + y` and a
squeeze-and-excitation product included) makes the channels it adds one
channel (a union-find over ids), a concatenation joins the lists, and
Flatten keeps the list under the spatial positions. A Dense or Conv layer
(also under `TimeDistributed`) reads its input's channels and writes new
ones; an Embedding writes new ones from token ids, reading none. A Keras
mask (`mask_zero=True`) marks positions, not channels: it is passed over.
This is the dependency graph of Torch-Pruning (Fang et al., "DepGraph:
Towards Any Structural Pruning", CVPR 2023), restricted to the last axis.

A channel (with every channel it is one with) can go when no layer reads
it with a non-zero weight, or when every layer that writes it has no
incoming weight for it: it is then an input-independent constant, which is
folded into the bias of each reader where that is exact: a Dense reader of
a flattened tensor, a Dense reader or a `valid` convolution of a spatially
uniform constant, or a constant 0 (the constants are read off one example,
all zeros or token ids 1, whose unknown dimensions are `_PROBE_SIZE`). Model
inputs and outputs, layers used more than once, nested models and layers
this module does not know pin their channels: those stay.
"""

import collections

import keras
import numpy as np
from keras import ops

from keras_anneal.layers import Masked
from keras_anneal.layers import is_prunable
from keras_anneal.layers import quantized_modes

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
# Activations that act on each unit alone; any other (softmax, sparsemax,
# glu, a function of the user's) is taken to mix the units.
_ELEMENTWISE_ACTIVATIONS = frozenset({
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "swish",
    "hard_silu", "hard_swish", "mish", "sigmoid", "hard_sigmoid", "log_sigmoid",
    "sparse_sigmoid", "tanh", "hard_tanh", "tanh_shrink", "softplus", "softsign",
    "sparse_plus", "squareplus", "exponential", "soft_shrink", "hard_shrink", "threshold",
})


_MERGES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)
# Operator nodes (`x + y`, `keras.ops.relu(x)`) that act on each element alone.
_ELEMENTWISE_OPS = frozenset({
    "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Negative",
    "Absolute", "Square", "Sqrt", "Exp", "Power", "Clip", "Relu", "Relu6", "Sigmoid", "Tanh",
    "Silu", "Gelu", "Elu", "Selu", "LeakyRelu", "Softplus", "HardSigmoid", "HardSilu",
})


def _unwrapped(layer):
    """The layer a `Masked` layer holds, else `layer` (other wrappers, such as
    `TimeDistributed` or `Bidirectional`, change what their layer computes)."""
    return layer.layer if isinstance(layer, Masked) else layer


def kernel_layer(layer):
    """The layer that holds the kernel: `layer`, the layer a `Masked` layer
    holds, or the Dense layer or convolution a `TimeDistributed` applies at
    every step (the same channels, under one more axis)."""
    layer = _unwrapped(layer)
    if isinstance(layer, keras.layers.TimeDistributed) and _plain_producer(layer.layer):
        return layer.layer
    return layer


def is_producer(layer):
    """Dense and (non-grouped, channels-last) convolutions, also under
    `TimeDistributed`: the layers that read channels and write units, which
    `compact` narrows on both sides."""
    return _plain_producer(kernel_layer(layer))


def _plain_producer(layer):
    return (
        isinstance(layer, _PRODUCERS) and not isinstance(layer, _EXCLUDED_PRODUCERS)
        and not quantized_modes([layer])
        and getattr(layer, "groups", 1) == 1
        and getattr(layer, "data_format", "channels_last") == "channels_last"
    )


def is_source(layer):
    """An Embedding (not quantized): it writes units (its output dimensions,
    columns of `embeddings`) from token ids, and reads no channel."""
    return isinstance(layer, keras.layers.Embedding) and not quantized_modes([layer])


def writes_units(layer):
    """The layers whose output units `compact` removes: producers and sources."""
    return is_producer(layer) or is_source(layer)


def _incoming(layer):
    """Per output unit of a producer or source: has it a non-zero incoming weight?"""
    layer = kernel_layer(layer)
    kernel = ops.convert_to_numpy(layer.embeddings if is_source(layer) else layer.kernel)
    return np.any(kernel.reshape(-1, kernel.shape[-1]) != 0, axis=0)


def _mixes_units(layer):
    activation = getattr(layer, "activation", None)
    return activation is not None and getattr(activation, "__name__", "") not in (
        _ELEMENTWISE_ACTIVATIONS
    )


def _acts_per_channel(layer, rank):
    if not isinstance(layer, _PER_CHANNEL) or _mixes_units(layer):
        return False
    if isinstance(layer, keras.layers.BatchNormalization):
        return layer.axis in (-1, rank - 1)
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _rows_used(operation, tensor):
    """Per channel of `tensor`, may `operation` (a layer it does not follow)
    use it? Judged from its weights whose rows are those channels (axis 0:
    an LSTM's or a Dense layer's kernel, attention's; the second-to-last: a
    convolution's): a channel with only zero rows is unused. Where none has
    such rows (a weightless op, a softmax), every channel may be."""
    count = tensor.shape[-1]
    weights = operation.weights if isinstance(operation, keras.layers.Layer) else []
    used, judged = np.zeros(count or 0, bool), False
    for weight in weights:
        shape = tuple(weight.shape)
        if count is None or len(shape) < 2 or count not in (shape[0], shape[-2]):
            continue
        values = ops.convert_to_numpy(weight)
        rows = np.moveaxis(values, 0 if shape[0] == count else -2, 0).reshape(count, -1)
        used |= np.any(rows != 0, axis=1)
        judged = True
    return used if judged else np.ones(count or 0, bool)


def _steps_per_channel(layer, rank):
    """A `TimeDistributed` layer that applies, with no weights, a layer that
    acts per channel (pooling, an activation) at every step."""
    return (isinstance(layer, keras.layers.TimeDistributed) and not layer.weights
            and _acts_per_channel(layer.layer, rank - 1))


def _broadcast_channels(tensors):
    """True if element-wise `tensors` line up channel by channel: one rank,
    one last axis, the other axes equal or 1 (squeeze-and-excitation's
    `(1, 1, C)` times `(H, W, C)`)."""
    shapes = [tuple(tensor.shape) for tensor in tensors]
    if len({len(shape) for shape in shapes}) != 1 or len({shape[-1] for shape in shapes}) != 1:
        return False
    for sizes in zip(*(shape[1:-1] for shape in shapes)):
        if len(set(sizes)) == 1:
            continue
        known = {size for size in sizes if size != 1}
        if len(known) != 1 or None in known:
            return False
    return shapes[0][-1] is not None


def _elementwise(node):
    """True for an operator node such as `x + y` or `keras.ops.relu(x) * 2.0`."""
    if isinstance(node.operation, keras.layers.Layer):
        return False
    if type(node.operation).__name__ not in _ELEMENTWISE_OPS:
        return False
    arguments = list(node.arguments.args) + list(node.arguments.kwargs.values())
    return all(isinstance(a, (keras.KerasTensor, int, float)) for a in arguments)


# The size a zero probe gives the dimensions a model leaves unknown (a text
# model's sequence length, a fully convolutional model's height and width).
_PROBE_SIZE = 64

Reader = collections.namedtuple("Reader", "layer tensor channels flat_shape")


class ChannelDependencies:
    """The channels of a Functional graph, merged where layers couple them.

    Args:
        graph: a Functional `keras.Model`. `Masked` layers are followed as
            the layers they wrap (for the coupling alone: `removal` reads
            plain kernels, so call it on a stripped model).

    Call `removal()` for what can go, `find` for which channels are one.
    """

    def __init__(self, graph):
        self.graph = graph
        self._parent = []
        self.pinned, self.at_output = set(), set()
        self.opaque = set()  # Channels read by layers it does not follow.
        self.tensors = {}  # id(tensor) -> channel ids of its last axis.
        self.flat = {}  # id(tensor) -> (shape before Flatten, channel ids).
        self.readers = []  # Reader: a Dense or Conv layer and the channels it reads.
        self.producers = []  # (layer, channel ids it writes): the readers' layers and Embeddings.
        self.sliced = []  # (per-channel layer with weights or a shape, channel ids).
        self.unfollowed = []  # Layers it does not know, used more than once, or nested models.
        nodes = [node for depth in sorted(graph._nodes_by_depth, reverse=True)
                 for node in graph._nodes_by_depth[depth]]
        uses = collections.Counter(id(node.operation) for node in nodes)
        for node in nodes:
            if isinstance(node.operation, keras.layers.InputLayer):
                continue
            if uses[id(node.operation)] > 1 or not self._follow(node):
                for tensor in node.input_tensors:  # A layer it does not know: pinned.
                    self._pin(tensor, used=_rows_used(node.operation, tensor))
                if node.operation not in self.unfollowed:
                    self.unfollowed.append(node.operation)
        for tensor in graph.outputs:
            self._pin(tensor, output=True)

    def find(self, channel):
        """The id that stands for `channel` and every channel it is one with."""
        while self._parent[channel] != channel:
            self._parent[channel] = self._parent[self._parent[channel]]
            channel = self._parent[channel]
        return channel

    def _new(self, count, pinned=False):
        ids = list(range(len(self._parent), len(self._parent) + count))
        self._parent += ids
        if pinned:
            self.pinned.update(ids)
        return ids

    def _channels(self, tensor):
        """Channel ids of `tensor`'s last axis (new, pinned ones where untracked)."""
        if id(tensor) in self.flat:
            self._pin(tensor)
            return self._new(int(tensor.shape[-1]), pinned=True)
        if id(tensor) not in self.tensors:
            self.tensors[id(tensor)] = self._new(int(tensor.shape[-1] or 0), pinned=True)
        return self.tensors[id(tensor)]

    def _pin(self, tensor, output=False, used=None):
        """Pins the channels of `tensor`; `used` (one bool per channel, or
        None for none) says which of them a layer it does not follow reads."""
        ids = self.flat[id(tensor)][1] if id(tensor) in self.flat else self.tensors.get(id(tensor), [])
        self.pinned.update(ids)
        if output:
            self.at_output.update(ids)
        if used is not None and id(tensor) in self.flat:
            self.opaque.update(ids)  # Rows of positions × channels: all may be read.
        elif used is not None:
            self.opaque.update(c for c, read in zip(ids, used) if read)

    def _follow(self, node):
        """Records what `node` does to channels; False if it is not a layer it knows."""
        layer, outputs = node.operation, node.output_tensors
        # A Keras mask (`mask_zero=True` upstream) marks positions, not channels.
        masks = {id(t) for t in keras.tree.flatten(node.arguments.kwargs.get("mask"))}
        inputs = [tensor for tensor in node.input_tensors if id(tensor) not in masks]
        if len(outputs) != 1 or isinstance(layer, keras.Model) or not inputs:
            return False
        out, x = id(outputs[0]), inputs[0]
        flat = [id(tensor) in self.flat for tensor in inputs]
        inner = kernel_layer(layer)  # Followed through `Masked` and `TimeDistributed` too.
        if len(inputs) == 1 and is_producer(inner):
            if flat[0] and not isinstance(_unwrapped(layer), keras.layers.Dense):
                return False
            shape, ids = self.flat[id(x)] if flat[0] else (None, self._channels(x))
            self.readers.append(Reader(layer, x, ids, shape))
            self.tensors[out] = self._new(int(inner.kernel.shape[-1]), pinned=_mixes_units(inner))
            self.producers.append((layer, self.tensors[out]))
        elif len(inputs) == 1 and is_source(inner) and not flat[0]:
            self._pin(x)  # Token ids: not channels to narrow.
            self.tensors[out] = self._new(int(inner.output_dim))
            self.producers.append((layer, self.tensors[out]))
        elif len(inputs) == 1 and isinstance(layer, keras.layers.Flatten):
            if flat[0]:
                self.flat[out] = self.flat[id(x)]
            elif layer.data_format == "channels_last" and None not in x.shape[1:]:
                self.flat[out] = (tuple(x.shape[1:]), self._channels(x))
            else:
                return False
        elif len(inputs) == 1 and (_acts_per_channel(layer, len(x.shape)) or _elementwise(node)
                                   or _steps_per_channel(layer, len(x.shape))):
            if flat[0]:
                if not isinstance(layer, _IDENTITY_AT_INFERENCE):
                    return False
                self.flat[out] = self.flat[id(x)]
            else:
                self.tensors[out] = self._channels(x)
                if isinstance(layer, keras.layers.Layer) and layer.weights:
                    self.sliced.append((layer, self.tensors[out]))
        elif len(inputs) == 1 and isinstance(layer, keras.layers.Reshape):
            # Channels last and unchanged (e.g. (C,) to (1, 1, C)): they pass on.
            if flat[0] or outputs[0].shape[-1] != x.shape[-1] or x.shape[-1] is None:
                return False
            self.tensors[out] = self._channels(x)
            self.sliced.append((layer, self.tensors[out]))  # Its target shape narrows.
        elif isinstance(layer, _MERGES) or _elementwise(node):
            if any(flat) or not _broadcast_channels(inputs):
                return False
            lists = [self._channels(tensor) for tensor in inputs]
            for others in lists[1:]:
                for a, b in zip(lists[0], others):
                    self._parent[self.find(a)] = self.find(b)
            self.tensors[out] = lists[0]
        elif isinstance(layer, keras.layers.Concatenate):
            if any(flat) or layer.axis not in (-1, len(x.shape) - 1):
                return False
            self.tensors[out] = [c for tensor in inputs for c in self._channels(tensor)]
        else:
            return False
        return True

    def removal(self):
        """`(removed, constants, kept_dead)`.

        `removed`: the channel roots (see `find`) that go. `constants`: per
        reader index, the bias change that replaces the removed constant
        channels it read. `kept_dead`: names of producers with a dead unit
        that stays (one with no incoming weight, or none out of it into the
        layers that read it, pinned by a layer it does not know or a
        constant it cannot fold), and layers it does not follow
        (transposed, depthwise or grouped convolutions, shared layers,
        nested models) that have one; the model's own outputs are not
        listed.
        """
        no_input = set()
        for layer, ids in self.producers:
            no_input.update(c for c, alive in zip(ids, _incoming(layer)) if not alive)
        members = collections.defaultdict(set)
        for channel in range(len(self._parent)):
            members[self.find(channel)].add(channel)
        constant = {root for root, group in members.items() if group <= no_input}
        pinned = {self.find(c) for c in self.pinned}
        removed, read, values = first = self._removal_pass(set(), members, constant, pinned)
        # Removing a unit stops its layer from reading through that unit's
        # weights, which may leave more channels unread: repeat until nothing
        # changes (a chain of dead units goes whole). Without a fixed point,
        # the first pass (which reads through every unit) is the safe answer.
        for _ in range(len(self.producers)):
            before = removed
            removed, read, values = self._removal_pass(before, members, constant, pinned)
            if removed == before:
                break
        else:
            removed, read, values = first
        constants = {
            index: _bias_change(reader, values[index], self.find, removed & read)
            for index, reader in enumerate(self.readers) if index in values
        }
        # Dead: no incoming weight, or no weight out of it (a layer it does
        # not follow, such as a softmax Activation, may read it: `_rows_used`).
        outputs = {self.find(c) for c in self.at_output}
        opaque = {self.find(c) for c in self.opaque}
        kept_dead = [
            layer.name for layer, ids in self.producers
            if any((c in no_input or self.find(c) not in read | opaque) and self.find(c) not in removed
                   and self.find(c) not in outputs for c in ids)
        ]
        kept_dead += [name for operation in self.unfollowed for name in _with_dead_units(operation)
                      if name not in kept_dead]
        return removed, constants, kept_dead

    def _removal_pass(self, removed, members, constant, pinned):
        """`(removable roots, read roots, probe values)`, reading only through
        the units whose roots are not in `removed`."""
        read = set()
        units_of = {id(layer): units for layer, units in self.producers}  # Each used once.
        for reader in self.readers:
            kept = np.array([self.find(c) not in removed for c in units_of[id(reader.layer)]])
            read.update(self.find(reader.channels[j])
                        for j in np.flatnonzero(_outgoing(reader, kept)))
        candidates = {root for root in members if root not in pinned
                      and (root not in read or root in constant)}
        values = self._constant_inputs(candidates & read)
        if values is None:  # The graph cannot run on a zero probe: no constant is folded.
            candidates -= read
            values = {}
        for index, reader in enumerate(self.readers):
            if index in values:
                candidates -= _unfoldable(reader, values[index], self.find, candidates & read)
        for ids in self._channel_lists():
            if ids and all(self.find(c) in candidates for c in ids):
                candidates.discard(self.find(ids[0]))  # A tensor keeps a channel.
        return candidates, read, values

    def _channel_lists(self):
        yield from self.tensors.values()
        yield from (ids for _, ids in self.flat.values())
        yield from (ids for _, ids in self.producers)

    def _constant_inputs(self, roots):
        """Per reader index that reads a constant channel in `roots`: its input
        on an all-zero example (all ones for token ids; the constant channels
        do not depend on it, nor on its size: a dimension of unknown size is
        given `_PROBE_SIZE`); None if the graph cannot be run on it."""
        wanted = [index for index, reader in enumerate(self.readers)
                  if any(self.find(c) in roots for c in reader.channels)]
        if not wanted:
            return {}
        probe = keras.Model(self.graph.inputs, [self.readers[i].tensor for i in wanted])
        # Token ids are 1, not 0: 0 is padding where `mask_zero=True`, and
        # pooling over positions that are all padding gives NaN.
        try:
            examples = [np.full((1,) + tuple(_PROBE_SIZE if d is None else d for d in x.shape[1:]),
                                int("int" in str(x.dtype)), dtype=x.dtype)
                        for x in self.graph.inputs]
            values = probe(examples, training=False)
        except Exception:  # Strings in, too small for its pooling, or a size the model checks.
            return None
        values = values if isinstance(values, (list, tuple)) else [values]
        return {i: ops.convert_to_numpy(v).astype("float64") for i, v in zip(wanted, values)}


def _outgoing(reader, kept_units=None):
    """Per channel the reader reads: does any of its weights (into
    `kept_units`, a boolean array over its units, or all) use it?"""
    kernel = ops.convert_to_numpy(kernel_layer(reader.layer).kernel)
    if kept_units is not None:
        kernel = kernel[..., kept_units]
    count = len(reader.channels)
    if reader.flat_shape is not None:  # Rows of a Dense kernel: (positions..., channels).
        kernel = np.moveaxis(kernel.reshape(-1, count, kernel.shape[-1]), 1, 0)
    else:
        kernel = np.moveaxis(kernel, -2, 0)
    return np.any(kernel.reshape(count, -1) != 0, axis=1)


def _unfoldable(reader, value, find, roots):
    """Roots in `roots` whose constant this reader cannot fold into its bias."""
    rows = value.reshape(-1, len(reader.channels))  # One row per position.
    used = _outgoing(reader)
    layer = kernel_layer(reader.layer)
    bad = set()
    for j, channel in enumerate(reader.channels):
        root = find(channel)
        if root not in roots or not used[j]:
            continue
        if not np.all(np.isfinite(rows[:, j])):
            bad.add(root)  # Not a constant to fold (inf or NaN on the probe).
            continue
        if not np.any(rows[:, j]):
            continue
        uniform = np.allclose(rows[:, j], rows[0, j], rtol=1e-6, atol=1e-7)
        foldable = reader.flat_shape is not None or (uniform and (
            isinstance(layer, keras.layers.Dense) or layer.padding == "valid"))
        if not foldable or not layer.use_bias:
            bad.add(root)
    return bad


def _bias_change(reader, value, find, roots):
    """What the removed constant channels added to the reader's outputs."""
    kernel = ops.convert_to_numpy(kernel_layer(reader.layer).kernel).astype("float64")
    gone = np.array([find(c) in roots for c in reader.channels])
    rows = value.reshape(-1, len(reader.channels))
    if reader.flat_shape is not None:
        return (np.where(gone, rows, 0.0).reshape(-1) @ kernel).astype("float32")
    constant = np.where(gone, rows[0], 0.0)
    kernel = kernel.reshape(-1, len(gone), kernel.shape[-1])
    return np.einsum("kco,c->o", kernel, constant).astype("float32")


def _with_dead_units(operation):
    """Names of the layers in `operation` (nested models opened) with a unit
    whose incoming weights are all zero."""
    if not isinstance(operation, keras.layers.Layer):
        return []
    if isinstance(operation, keras.Model):
        return [name for layer in operation.layers for name in _with_dead_units(layer)]
    if isinstance(operation, keras.layers.Wrapper):  # TimeDistributed, Bidirectional.
        inner = [getattr(operation, name, None) for name in ("layer", "forward_layer", "backward_layer")]
        return [operation.name] if any(_with_dead_units(layer) for layer in inner if layer) else []
    if hasattr(operation, "depthwise_kernel"):  # Separable: both kernels.
        kernels = [(operation.depthwise_kernel, True), (operation.pointwise_kernel, False)]
    else:
        depthwise = isinstance(operation, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D))
        kernels = [(getattr(operation, "kernel", None), depthwise)]
    for kernel, per_input_channel in kernels:
        if kernel is None or len(kernel.shape) < 2:
            continue
        kernel = ops.convert_to_numpy(kernel)
        if isinstance(operation, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
                                  keras.layers.Conv3DTranspose)):
            kernel = np.swapaxes(kernel, -1, -2)  # Output channels on the last axis.
        if per_input_channel:  # One unit per (input channel, multiplier).
            units = kernel.reshape(int(np.prod(kernel.shape[:-2])), -1)
        else:
            units = kernel.reshape(-1, kernel.shape[-1])
        if not np.all(np.any(units != 0, axis=0)):
            return [operation.name]
    return []


def coupled_units(model, layers):
    """Per mask of `layers`, an id per output unit that names the units a
    residual add (or any element-wise merge) couples across layers; None
    where nothing is coupled or the model is not a Functional graph."""
    if not hasattr(model, "_nodes_by_depth") or isinstance(model, keras.Sequential):
        return None  # A chain couples nothing; a subclassed model has no graph to read.
    dependencies = ChannelDependencies(model)
    roots = {id(layer): [dependencies.find(c) for c in ids]
             for layer, ids in dependencies.producers}
    groups = [roots.get(id(layer)) if len(layer.masks) == 1 else None
              for layer in layers for _ in layer.masks]
    members = {}
    for group in filter(None, groups):
        for root in set(group):
            members[root] = members.get(root, 0) + 1
    if not any(count > 1 for count in members.values()):
        return None
    return groups


def output_producers(model):
    """Ids of the `Masked` layers whose units are the model's outputs.

    Walks back from each output through layers that hold no prunable weight
    (activations, Dropout, BatchNormalization, reshapes); the `Masked`
    layers reached there make the outputs, and keep their units.
    """
    found, seen = set(), set()
    stack = list(getattr(model, "outputs", None) or [])
    while stack:
        history = getattr(stack.pop(), "_keras_history", None)
        if history is None or id(history[0]) in seen:
            continue
        operation, node_index = history[0], history[1]
        seen.add(id(operation))
        if isinstance(operation, Masked):
            found.add(id(operation))
        elif isinstance(operation, keras.Model) and getattr(operation, "outputs", None):
            stack.extend(operation.outputs)  # A nested model: through its own graph.
        elif not is_prunable(operation):
            nodes = getattr(operation, "_inbound_nodes", [])
            if node_index < len(nodes):
                stack.extend(nodes[node_index].input_tensors)
    return found
