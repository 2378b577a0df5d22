"""`Masked`: the wrapper layer that holds and applies pruning masks.

Every other part of keras-anneal (the annealing callback, `strip`, the
reports) reads and writes masks through this layer and nothing else.
"""

import contextlib
import inspect
import math
import threading

import keras
import numpy as np
from keras import ops

from keras_anneal import _validation
from keras_anneal import drop_connect as noise
from keras_anneal import masking

# The registry: layer class -> names of its prunable weights (the public
# property names). Checked with `isinstance`, so subclasses are covered too.
# Layers that hold other layers (MultiHeadAttention, a custom Transformer
# block, a subclassed model) are prunable through their sublayers.
_REGISTRY = {
    keras.layers.Dense: ("kernel",),
    keras.layers.EinsumDense: ("kernel",),
    keras.layers.Conv1D: ("kernel",),
    keras.layers.Conv2D: ("kernel",),
    keras.layers.Conv3D: ("kernel",),
    keras.layers.Conv1DTranspose: ("kernel",),
    keras.layers.Conv2DTranspose: ("kernel",),
    keras.layers.Conv3DTranspose: ("kernel",),
    keras.layers.DepthwiseConv1D: ("kernel",),
    keras.layers.DepthwiseConv2D: ("kernel",),
    keras.layers.SeparableConv1D: ("depthwise_kernel", "pointwise_kernel"),
    keras.layers.SeparableConv2D: ("depthwise_kernel", "pointwise_kernel"),
    keras.layers.Embedding: ("embeddings",),
    # Recurrent cells: an LSTM, GRU, SimpleRNN or ConvLSTM layer (or a Bidirectional
    # one) is prunable through its cell, input and recurrent kernels alike.
    keras.layers.LSTMCell: ("kernel", "recurrent_kernel"),
    keras.layers.GRUCell: ("kernel", "recurrent_kernel"),
    keras.layers.SimpleRNNCell: ("kernel", "recurrent_kernel"),
}
try:  # The cell of ConvLSTM1D/2D/3D, which Keras does not export.
    from keras.src.layers.rnn.conv_lstm import ConvLSTMCell as _ConvLSTMCell
except ImportError:  # pragma: no cover - a Keras that moved it: ConvLSTM stays unmasked.
    _ConvLSTMCell = None
if _ConvLSTMCell is not None:
    _REGISTRY[_ConvLSTMCell] = ("kernel", "recurrent_kernel")
SUPPORTED_LAYERS = tuple(_REGISTRY)
# Cells whose two kernels share their output columns (gate x unit) and bias.
_RECURRENT = tuple(cell for cell in (
    keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell, _ConvLSTMCell,
) if cell is not None)
# Kernels whose last two axes index the output channels (input x multiplier).
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def _einsum_unit_axes(equation):
    """Trailing axes of an `EinsumDense` kernel that its output keeps.

    >>> _einsum_unit_axes("abc,cde->abde"), _einsum_unit_axes("abcd,cde->abe")
    (2, 1)
    """
    inputs, output = equation.split("->")
    kernel = inputs.split(",")[1].replace("...", "")
    count = 0
    for letter in reversed(kernel):
        if letter not in output:
            break
        count += 1
    return count
# Kernels `(..., filters, in_channels)`: their units are not trailing axes.
_TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)


def register_prunable_layer(cls, weights):
    """Declares the prunable weights of a layer class, by attribute name.

    After `register_prunable_layer(MyLayer, ["kernel"])`, `Masked` wraps
    `MyLayer` (and its subclasses) and masks `layer.kernel`; `prune_model`
    wraps it, alone or inside other layers. A class defining
    `get_prunable_weights()` needs no registration.

    Args:
        cls: a subclass of `keras.layers.Layer`.
        weights: names of the attributes holding its prunable variables.

    Raises:
        TypeError: if `cls` is not a layer class or `weights` not names.

    Example:

    >>> class Scale(keras.layers.Layer):
    ...     def build(self, shape):
    ...         self.scale = self.add_weight(shape=shape[-1:], initializer="ones")
    ...     def call(self, x):
    ...         return x * self.scale
    >>> register_prunable_layer(Scale, ["scale"])
    >>> layer = Masked(Scale())
    >>> _ = layer(np.ones((1, 3)))
    >>> [tuple(mask.shape) for mask in layer.masks]
    [(3,)]
    """
    if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
        raise TypeError(
            "Argument `cls` must be a subclass of `keras.layers.Layer`. "
            f"Received: cls={cls!r}"
        )
    if not isinstance(weights, (list, tuple)) or not weights or not all(
        isinstance(w, str) for w in weights
    ):
        raise TypeError(
            "Argument `weights` must be a non-empty list of attribute names (str). "
            f"Received: weights={weights!r}"
        )
    _REGISTRY[cls] = tuple(weights)


def _own_prunable_names(layer):
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


def quantized_modes(layers):
    """`{name: quantization mode}` of the layers `model.quantize` reached."""
    return {layer.name: layer.quantization_mode for layer in layers
            if getattr(layer, "quantization_mode", None)}


def _own_prunable_variables(layer):
    """The prunable variables `layer` holds itself, or None if it is not a leaf."""
    if callable(getattr(layer, "get_prunable_weights", None)):
        return list(layer.get_prunable_weights())
    names = _own_prunable_names(layer)
    if names is None:
        return None
    missing = [name for name in names if not hasattr(layer, name)]
    if missing:
        raise ValueError(
            f"`register_prunable_layer` named weights that layer '{layer.name}' "
            f"({type(layer).__name__}) does not have once built: {missing}. Expected "
            f"attribute names of its variables. Received: weights={list(names)!r}"
        )
    return [getattr(layer, name) for name in names]


def prunable_variables(layer):
    """`(owner, variable)` for every prunable variable in `layer`, sublayers included.

    Leaves come from the registry (or `get_prunable_weights()`); other layers
    are searched through their sublayers, skipping those already `Masked`.
    Each variable appears once, even in a layer shared by two parents.
    """
    found, seen = [], set()

    def visit(current):
        own = _own_prunable_variables(current)
        if own is not None:
            for variable in own:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    found.append((current, variable))
            return
        for sublayer in current._flatten_layers(include_self=False, recursive=False):
            if not isinstance(sublayer, Masked):
                visit(sublayer)

    visit(layer)
    return found


def is_prunable(layer):
    """Whether `Masked` can wrap `layer`: whether it holds a prunable weight.

    True for the registered Keras layers (`SUPPORTED_LAYERS` and their
    subclasses, and classes added by `register_prunable_layer`), for any
    layer that defines `get_prunable_weights()` (the protocol tfmot's
    `PrunableLayer` uses), and for any layer or model holding one of those
    (`MultiHeadAttention`, a custom Transformer block, a subclassed model).
    """
    if not isinstance(layer, keras.layers.Layer) or isinstance(layer, Masked):
        return False
    if (
        _own_prunable_names(layer) is not None
        or callable(getattr(layer, "get_prunable_weights", None))
        or isinstance(layer, keras.layers.MultiHeadAttention)  # Sublayers made in `build`.
    ):
        return True
    return any(
        is_prunable(sublayer)
        for sublayer in layer._flatten_layers(include_self=False, recursive=False)
    )


def declares_prunable_weights(layer):
    """Whether `layer` is a user's layer that says which of its weights are
    prunable (`register_prunable_layer` or `get_prunable_weights()`), so
    that its other weights are unprunable by declaration."""
    if callable(getattr(layer, "get_prunable_weights", None)):
        return True
    return _own_prunable_names(layer) is not None and not isinstance(layer, SUPPORTED_LAYERS)


def _has_unbuilt_sublayer(layer):
    return any(
        not sublayer.built
        for sublayer in layer._flatten_layers(include_self=False, recursive=True)
    )


def _attribute_of(layer, variable):
    """Name of the attribute of `layer` that stores `variable` itself, or None.

    Keras layers keep a weight under a public name (`conv.kernel`) or behind a
    property (`dense._kernel`); the instance dictionary tells which.
    """
    return next((name for name, value in vars(layer).items() if value is variable), None)


def _attribute_holding(layer, variable):
    """`_attribute_of`, for a variable `Masked` must substitute: an error if none."""
    name = _attribute_of(layer, variable)
    if name is not None:
        return name
    raise ValueError(
        f"Cannot find the attribute of layer '{layer.name}' that holds the "
        f"prunable weight '{variable.path}'. `Masked` substitutes the masked "
        "weight for that attribute during the call, so the layer must store "
        "each prunable variable as an attribute of its own."
    )


@contextlib.contextmanager
def _substituted(slots, values):
    """Temporarily replace attributes, bypassing layer tracking.

    `slots` are `(layer, attribute name)` pairs. `object.__setattr__` skips
    Keras' (and torch's) attribute tracking, so the layers' variables are left
    exactly as they were.
    """
    originals = [vars(layer)[name] for layer, name in slots]
    try:
        for (layer, name), value in zip(slots, values):
            object.__setattr__(layer, name, value)
        yield
    finally:
        for (layer, name), value in zip(slots, originals):
            object.__setattr__(layer, name, value)


def layers_without_units(layers):
    """Names of the `Masked` layers with a kernel whose units are not its
    trailing axes (a transposed convolution's `(..., filters, n_in)`), which
    `granularity="unit"` leaves as weights (the unit guard follows them)."""
    return [
        layer.name for layer in layers
        if any(axes <= 0 and len(mask.shape) >= 2 for axes, mask in zip(layer.unit_axes, layer.masks))
    ]


class _OnKeptWeights:
    """A weight regularizer applied to `w * m`: pruned weights cost nothing.

    Keras computes a weight's penalty on the variable itself; under a mask
    it would go on charging for weights the model no longer has, so the
    loss would not be the loss of the pruned model.
    """

    def __init__(self, regularizer, mask):
        self.regularizer = regularizer
        self.mask = mask

    def __call__(self, weight):
        return self.regularizer(ops.multiply(weight, ops.cast(self.mask, weight.dtype)))


@keras.saving.register_keras_serializable(package="keras_anneal")
class Masked(keras.layers.Wrapper):
    """Wraps a layer and multiplies each prunable weight by a 0/1 mask.

    For each prunable weight `w` of the wrapped layer (the kernel of Dense,
    EinsumDense and the convolutions, both kernels of the separable
    convolutions, the embeddings of Embedding; in a layer that holds other
    layers, such as `MultiHeadAttention`, a custom Transformer block or a
    subclassed model, those of all its sublayers), `Masked` holds a
    non-trainable mask `m` of the same shape, initially all ones, and the
    wrapped layer computes with `w * m`. A weight with `m = 0` therefore
    contributes nothing and gets a zero gradient. Its stored value is not
    zeroed (the mask alone records what is pruned), so setting its mask back
    to 1 restores it; with plain SGD that value stays exactly as it was, while
    optimizers with momentum or weight decay may still move it, which never
    affects the output. The bias of a unit whose incoming weights are all
    pruned gets a zero gradient too (its value, and so the output, are
    unchanged): a unit removed with its bias (`granularity="unit"`) stays
    removed. A weight regularizer of a masked weight (`kernel_regularizer`)
    penalizes `w * m`: the loss is that of the pruned model. Masks save and
    load with the model.

    With `drop_connect=r > 0`, training also drops each kept weight with
    probability `r` at every step and scales the rest (DropConnect, Wan et
    al. 2013): the layer trains with `w * m * b / (1 - r)`,
    `b ~ Bernoulli(1 - r)`, and infers with `w * m`. This is pruning as
    noise injection in its limit (Bartoldson et al., NeurIPS 2020): a
    regularizer that can take Dropout's place. By default one draw of `b`
    serves the whole batch; `drop_connect_groups=g` gives example `i` of a
    batch the draw `i mod g` (Wan et al. draw one per example): the wrapped
    layer runs once per group, on that group's rows. The noise's expected
    loss is the same, its gradient less noisy, as with Dropout's draw per
    example. With `drop_connect_noise="gaussian"` (a `keras.layers.Dense` or
    a plain `Conv1D`/`Conv2D`/`Conv3D`) every example gets its own draw of
    every weight, the kept weights times `1 + sigma * e`, `e ~ N(0, 1)`,
    `sigma = sqrt(r / (1 - r))` (the Bernoulli draw's mean and variance),
    drawn through the pre-activation at the cost of one more matrix product
    or convolution (`keras_anneal.drop_connect`). The
    noise's state saves with the layer, so a run resumed from saved weights
    draws what the uninterrupted run would have.

    Args:
        layer: the `keras.layers.Layer` to wrap: one of `SUPPORTED_LAYERS`
            (or a subclass), or a layer defining `get_prunable_weights()`.
        drop_connect: the rate `r` in [0, 1) at which training drops kept
            weights. Defaults to 0.0 (no noise).
        seed: non-negative int seed of that noise, or `None`. Defaults to
            `None`.
        drop_connect_groups: positive int, the number of independent draws
            per training batch. Above 1 it needs `drop_connect > 0` and a
            layer of `SUPPORTED_LAYERS` without an activity regularizer
            (a layer whose call has no side effects to repeat per group).
            Defaults to 1.
        drop_connect_noise: `"bernoulli"` (weights left out, the rest
            scaled) or `"gaussian"` (weights scaled by normal noise, drawn
            per example; needs `drop_connect > 0`, one group, and a
            `keras.layers.Dense` or a non-causal `Conv1D`/`Conv2D`/`Conv3D`
            whose `call` is its class's own, without an activity
            regularizer). Defaults to `"bernoulli"`.
        **kwargs: base `Layer` arguments such as `name`. The name defaults
            to `"masked_" + layer.name` (`prune_model` passes an output
            layer's own name, to keep the model's `output_names`).

    Raises:
        TypeError: if `layer` is not a Keras layer, `drop_connect` not a
            float, `seed` or `drop_connect_groups` not an int.
        ValueError: if `layer` has no prunable weight, is already wrapped,
            or has LoRA or quantization enabled; if `drop_connect` is
            outside [0, 1), `seed` negative, `drop_connect_groups` below
            1 (or above 1 without noise or on another layer), or
            `drop_connect_noise` unknown (or `"gaussian"` where it cannot
            apply).

    Example:

    >>> layer = Masked(keras.layers.Dense(2))
    >>> y = layer(np.ones((1, 3)))
    >>> layer.set_masks([np.array([[1, 0], [1, 1], [0, 1]])])
    >>> layer.sparsity
    0.3333333333333333
    >>> noisy = Masked(keras.layers.Dense(64, use_bias=False), drop_connect=0.5, seed=0)
    >>> x = np.eye(3)
    >>> bool(np.all(ops.convert_to_numpy(noisy(x)) == ops.convert_to_numpy(noisy(x))))
    True
    >>> 0.4 < float(np.mean(ops.convert_to_numpy(noisy(x, training=True)) == 0)) < 0.6
    True
    """

    def __init__(self, layer, drop_connect=0.0, seed=None, drop_connect_groups=1,
                 drop_connect_noise="bernoulli", **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "Argument `layer` must be a `keras.layers.Layer` instance. "
                f"Received: layer={layer!r} of type {type(layer).__name__}"
            )
        if isinstance(layer, Masked):
            raise ValueError(
                f"Argument `layer` is already a `Masked` layer. "
                f"Received: layer=Masked(name='{layer.name}')"
            )
        if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
            raise ValueError(
                "Argument `layer` must not have LoRA or quantization enabled: "
                "masks apply to the float kernel. Received: "
                f"layer={layer.__class__.__name__}(name='{layer.name}')"
            )
        if not is_prunable(layer):
            supported = ", ".join(cls.__name__ for cls in SUPPORTED_LAYERS)
            raise ValueError(
                f"Argument `layer` must hold prunable weights: be one of {supported}, "
                "define `get_prunable_weights()`, be registered with "
                "`keras_anneal.register_prunable_layer`, or contain such layers. "
                f"Received: layer={layer.__class__.__name__}(name='{layer.name}')"
            )
        drop_connect = _validation.check_rate("drop_connect", drop_connect)
        if seed is not None:
            seed = _validation.check_step("seed", seed)
        drop_connect_groups = _validation.check_drop_connect_groups(drop_connect_groups, drop_connect)
        if drop_connect_groups > 1 and (
            not isinstance(layer, SUPPORTED_LAYERS) or layer.activity_regularizer is not None
        ):
            raise ValueError(
                "Argument `drop_connect_groups` above 1 needs a layer whose call can run once "
                "per group: one of SUPPORTED_LAYERS without an activity regularizer (state "
                "updates, added losses and activity penalties would repeat). Received: "
                f"drop_connect_groups={drop_connect_groups} for "
                f"layer={layer.__class__.__name__}(name='{layer.name}')"
            )
        drop_connect_noise = noise.check_kind(
            drop_connect_noise, layer, drop_connect, drop_connect_groups)
        kwargs.setdefault("name", f"masked_{layer.name}")
        kwargs.setdefault("trainable", layer.trainable)  # A frozen layer's wrapper says so.
        # The masks take the wrapped layer's variable dtype; computing in its
        # dtype policy too keeps mixed precision layers in their precision.
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.drop_connect = drop_connect
        self.seed = seed
        self.drop_connect_groups = drop_connect_groups
        self.drop_connect_noise = drop_connect_noise
        # Only a noisy layer holds a seed generator (and its state variable).
        self._noise_seed = keras.random.SeedGenerator(seed) if drop_connect else None
        self.supports_masking = layer.supports_masking
        self._slots = ()
        self._variables = []
        self._masks = []
        # `call` substitutes masked tensors for the wrapped layer's variables;
        # the lock keeps two threads calling one model at once from seeing
        # each other's substitutions.
        self._call_lock = threading.RLock()

    def __call__(self, *args, **kwargs):
        if not args:  # Called with keywords only, e.g. `mha(query=q, value=v)`.
            first = next(iter(inspect.signature(self.layer.call).parameters), None)
            if first in kwargs:
                args = (kwargs.pop(first),)
        if not self.built and not (self.layer.built or self.layer.weights):
            # Let the wrapped layer build itself from all of its inputs
            # (MultiHeadAttention needs the query's and the value's shapes).
            self.layer(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def build(self, input_shape=None):
        self._masked_input_shape = input_shape
        # A subclassed model built from its config holds its weights but may
        # not say `built`: its weights are what matters here.
        if not (self.layer.built or self.layer.weights):
            try:
                self.layer.build(input_shape)
            except Exception as error:
                raise ValueError(
                    f"`Masked` could not build layer '{self.layer.name}' "
                    f"({type(self.layer).__name__}) from the input shape {input_shape}. "
                    "Build it first, e.g. call it once on sample inputs, then wrap it."
                ) from error
        if input_shape is not None and _has_unbuilt_sublayer(self.layer):
            # A custom layer with no `build` builds its sublayers in its first
            # call (and `load_model` marks it built without them): call it.
            self.layer(keras.KerasTensor(input_shape, dtype=self.layer.compute_dtype))
        found = prunable_variables(self.layer)
        if not found:
            raise ValueError(
                f"Layer '{self.layer.name}' ({type(self.layer).__name__}) holds no "
                "prunable weight once built. Received: its weights "
                f"{[v.path for v in self.layer.weights]}"
            )
        self._slots = tuple((owner, _attribute_holding(owner, v)) for owner, v in found)
        self._variables = [variable for _, variable in found]
        self._masks = [
            self.add_weight(
                name=f"{variable.name}_mask",
                shape=variable.shape,
                dtype=variable.dtype,
                initializer="ones",
                trainable=False,
            )
            for variable in self._variables
        ]
        for variable, mask in zip(self._variables, self._masks):
            if variable.regularizer is not None and not isinstance(variable.regularizer, _OnKeptWeights):
                variable.regularizer = _OnKeptWeights(variable.regularizer, mask)
        self.built = True
        self._bias_slots = self._find_unit_bias_slots()

    def _find_unit_bias_slots(self):
        """`(index of the prunable weight, bias attribute of its owner, unit axes)`
        of each unit bias (`unit_biases`) held by an attribute of its own."""
        found, seen = [], set()
        for index, (bias, axes) in enumerate(zip(self.unit_biases, self.unit_axes)):
            if bias is None or id(bias) in seen:
                continue
            owner = self._slots[index][0]
            attribute = _attribute_of(owner, bias)
            if attribute is not None:
                seen.add(id(bias))
                found.append((index, attribute, axes))
        return tuple(found)

    def get_build_config(self):
        # The wrapped layer records its own build (MultiHeadAttention needs
        # several shapes); this only tells `load_model` to create the masks.
        return {"input_shape": getattr(self, "_masked_input_shape", None)}

    def build_from_config(self, config):
        self.build(config.get("input_shape"))

    def call(self, inputs, *args, training=None, **kwargs):
        self.check_not_quantized()
        # `training` reaches the wrapped layer through Keras' call context.
        if not (training and self.drop_connect):
            return self._call_with(self._masks, inputs, *args, **kwargs)
        if self.drop_connect_noise == "gaussian":
            kernel = ops.multiply(self._variables[0], self._masks[0])
            _, biases = self._dead_units_frozen()
            bias = biases[0] if biases else self.layer.bias
            return noise.gaussian_output(
                self.layer, kernel, bias, inputs, self.drop_connect, self._noise_seed)
        # Group h is the rows h, h + g, h + 2g, ...: each runs once, with its own draw.
        return noise.in_groups(
            lambda rows: self._call_with(
                noise.bernoulli_masks(self._masks, self.drop_connect, self._noise_seed),
                rows, *args, **kwargs),
            inputs, self.drop_connect_groups)

    def check_not_quantized(self):
        """Raises if `model.quantize` reached the layers inside this one.

        Keras quantizes the innermost layers of a model, those inside a
        `Masked` layer too, and replaces their float kernels: the masks
        then apply to nothing the layer uses. Quantize the stripped model.
        """
        quantized = quantized_modes(owner for owner, _ in self._slots)
        if quantized:
            raise ValueError(
                f"The layers inside the Masked layer '{self.name}' were quantized "
                f"({quantized}): masks apply to the float kernel, so a model with Masked "
                "layers cannot be quantized. Quantize its stripped copy instead, made before "
                "quantizing: `stripped = keras_anneal.strip(model)`, then "
                "`stripped.quantize(mode)` (in place); the stripped model keeps the pruned "
                "weights at zero."
            )

    def _call_with(self, masks, inputs, *args, **kwargs):
        """The wrapped layer's call with its prunable weights times `masks`."""
        # Cast as Keras autocasts a variable read in the layer's call: a
        # mixed precision layer computes in its compute dtype.
        masked = [
            ops.cast(ops.multiply(variable, mask), owner.compute_dtype)
            for (owner, _), variable, mask in zip(self._slots, self._variables, masks)
        ]
        bias_slots, biases = self._dead_units_frozen()
        with self._call_lock, _substituted((*self._slots, *bias_slots), masked + biases):
            return self.layer(inputs, *args, **kwargs)

    def _dead_units_frozen(self):
        """The unit biases, unchanged in value, with no gradient where the unit is dead.

        A unit whose incoming weights are all pruned (by the permanent masks,
        not by DropConnect's draw) keeps its bias as it is: `b_u` becomes
        `a_u b_u + (1 - a_u) stop_gradient(b_u)`, `a_u` 1 while any of the
        unit's weights is kept. So the output is exactly the same, and a
        removed unit does not come back through its bias.
        """
        slots, values = [], []
        for index, attribute, axes in self._bias_slots:
            owner = self._slots[index][0]
            bias = vars(owner)[attribute]
            slots.append((owner, attribute))
            mask = self._masks[index]
            units = masking.unit_count(mask.shape, axes)
            alive = ops.reshape(ops.max(ops.reshape(mask, (-1, units)), axis=0), bias.shape)
            alive = ops.cast(alive, bias.dtype)
            value = ops.add(ops.multiply(alive, bias),
                            ops.multiply(1 - alive, ops.stop_gradient(bias)))
            values.append(ops.cast(value, owner.compute_dtype))
        return slots, values

    def get_config(self):
        config = super().get_config()
        if self.drop_connect:  # Configs of noiseless layers stay as they were.
            config.update(drop_connect=self.drop_connect, seed=self.seed)
        if self.drop_connect_groups != 1:
            config.update(drop_connect_groups=self.drop_connect_groups)
        if self.drop_connect_noise != "bernoulli":
            config.update(drop_connect_noise=self.drop_connect_noise)
        return config

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if self._noise_seed is not None:
            # Keras saves no seed state: without it a resumed run would
            # replay the noise from its first draw.
            store[str(self._own_variable_count())] = self._noise_seed.state

    def load_own_variables(self, store):
        count = self._own_variable_count()
        if self._noise_seed is not None and str(count) in store.keys():
            self._noise_seed.state.assign(store[str(count)])
            store = {str(index): store[str(index)] for index in range(count)}
        super().load_own_variables(store)

    def _own_variable_count(self):
        return len(self._trainable_variables) + len(self._non_trainable_variables)

    def compute_output_spec(self, *args, **kwargs):
        return self.layer.compute_output_spec(*args, **kwargs)

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def _require_built(self):
        if not self.built:
            raise ValueError(
                f"Layer '{self.name}' is not built yet, so it has no masks. "
                "Call it on an input (or build the model) first."
            )

    @property
    def prunable_weights(self):
        """The wrapped layer's variables that the masks apply to."""
        self._require_built()
        return list(self._variables)

    @property
    def unit_axes(self):
        """Per prunable weight, how many trailing axes index its output units.

        1 for a kernel `(..., n_out)`; 2 for a depthwise kernel
        `(k, k, n_in, multiplier)`, whose output channels are its last two
        axes; for an `EinsumDense` kernel, its trailing axes that the output
        keeps (2 for a `MultiHeadAttention` projection `(dim, heads,
        head_dim)`: each head's each index is a unit);
        `masking.UNITS_BEFORE_LAST` (-1) for a transposed convolution's
        `(..., filters, n_in)`, whose units the unit guard follows but
        `granularity="unit"` does not remove.
        """
        self._require_built()
        return [
            masking.UNITS_BEFORE_LAST if isinstance(owner, _TRANSPOSED)
            else 2 if isinstance(owner, _DEPTHWISE) or attribute.lstrip("_") == "depthwise_kernel"
            else _einsum_unit_axes(owner.equation) if isinstance(owner, keras.layers.EinsumDense)
            else 1
            for owner, attribute in self._slots
        ]

    @property
    def unit_biases(self):
        """Per prunable weight, the bias of its output units (or None).

        The owner's `bias` when the weight is the kernel that makes its
        outputs (a separable convolution's pointwise kernel, not its
        depthwise one) and the bias has one value per unit, flat or shaped
        like the unit axes, so that removing a unit can take its bias along.
        Never a recurrent cell's: its input and recurrent kernels share each
        output column's bias, which one kernel's column dying does not free.
        """
        biases = []
        for (owner, attribute), variable, axes in zip(self._slots, self._variables, self.unit_axes):
            name = attribute.lstrip("_")
            separable_depthwise = name == "depthwise_kernel" and hasattr(owner, "pointwise_kernel")
            makes_outputs = ("kernel" in name and not separable_depthwise
                             and not isinstance(owner, _RECURRENT))
            bias = getattr(owner, "bias", None) if makes_outputs and axes > 0 else None
            unit_shape = tuple(variable.shape[len(variable.shape) - axes:])
            fits = bias is not None and tuple(bias.shape) in ((math.prod(unit_shape),), unit_shape)
            biases.append(bias if fits else None)
        return biases

    @property
    def masks(self):
        """The mask variables, one per prunable weight, in the same order."""
        self._require_built()
        return list(self._masks)

    def get_masks(self):
        """The masks as a list of NumPy arrays of 0.0 and 1.0."""
        return [ops.convert_to_numpy(mask) for mask in self.masks]

    def set_masks(self, masks):
        """Sets every mask at once; all are checked before any is changed.

        Args:
            masks: a list with one array per prunable weight, of the same
                shape, holding only 0 and 1 (or booleans).

        Raises:
            ValueError: on a wrong count, shape or value.
        """
        current = self.masks
        masks = list(masks)
        if len(masks) != len(current):
            raise ValueError(
                f"Argument `masks` must hold {len(current)} arrays for layer "
                f"'{self.name}', one per prunable weight. Received: {len(masks)} arrays"
            )
        arrays = []
        for variable, mask in zip(current, masks):
            array = np.asarray(mask)
            if array.shape != tuple(variable.shape):
                raise ValueError(
                    f"Argument `masks` must hold, for mask '{variable.name}' of layer "
                    f"'{self.name}', an array of shape {tuple(variable.shape)}. "
                    f"Received: shape={array.shape}"
                )
            if not np.all((array == 0) | (array == 1)):
                raise ValueError(
                    f"Argument `masks` must hold only 0 and 1 (mask '{variable.name}' of "
                    f"layer '{self.name}'). Received values: {np.unique(array)[:5]}"
                )
            arrays.append(array.astype(np.float32))
        for variable, array in zip(current, arrays):
            variable.assign(array)

    def get_masked_weights(self):
        """The prunable weights times their masks, as NumPy arrays."""
        return [
            ops.convert_to_numpy(weight) * mask
            for weight, mask in zip(self.prunable_weights, self.get_masks())
        ]

    @property
    def sparsity(self):
        """Fraction of this layer's prunable weights that are pruned."""
        pruned, total = masking.count_pruned(self.get_masks())
        return pruned / total
