"""`Masked`: the wrapper layer that holds and applies pruning masks.

Every other part of keras-anneal (the annealing callback, `strip`, the
reports) reads and writes masks through this layer and nothing else.
"""

import contextlib

import keras
import numpy as np
from keras import ops

from keras_anneal import masking

# Prunable weights of the supported Keras layers, by attribute name. Checked
# with `isinstance`, so subclasses of these layers are supported too.
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
_EMBEDDING = (keras.layers.Embedding,)
_WITH_KERNEL = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)
SUPPORTED_LAYERS = _WITH_KERNEL + _SEPARABLE + _EMBEDDING


def is_prunable(layer):
    """Whether `Masked` can wrap `layer`.

    True for the supported Keras layers (`SUPPORTED_LAYERS` and their
    subclasses) and for any layer that defines `get_prunable_weights()`,
    returning the variables to mask (the protocol tfmot's `PrunableLayer`
    uses), so custom layers can opt in.
    """
    return isinstance(layer, SUPPORTED_LAYERS) or callable(
        getattr(layer, "get_prunable_weights", None)
    )


def _prunable_variables(layer):
    if isinstance(layer, _SEPARABLE):
        return [layer.depthwise_kernel, layer.pointwise_kernel]
    if isinstance(layer, _EMBEDDING):
        return [layer.embeddings]
    if isinstance(layer, _WITH_KERNEL):
        return [layer.kernel]
    return list(layer.get_prunable_weights())


def _attribute_holding(layer, variable):
    """Name of the attribute of `layer` that stores `variable` itself.

    Keras layers keep a weight under a public name (`conv.kernel`) or behind a
    property (`dense._kernel`); the instance dictionary tells which.
    """
    for name, value in vars(layer).items():
        if value is variable:
            return name
    raise ValueError(
        f"Cannot find the attribute of layer '{layer.name}' that holds the "
        f"prunable weight '{variable.path}'. `Masked` substitutes the masked "
        "weight for that attribute during the call, so the layer must store "
        "each prunable variable as an attribute of its own."
    )


@contextlib.contextmanager
def _substituted(layer, values):
    """Temporarily replace attributes of `layer`, bypassing layer tracking.

    `object.__setattr__` skips Keras' (and torch's) attribute tracking, so the
    layer's variables are left exactly as they were.
    """
    originals = {name: vars(layer)[name] for name in values}
    try:
        for name, value in values.items():
            object.__setattr__(layer, name, value)
        yield
    finally:
        for name, value in originals.items():
            object.__setattr__(layer, name, value)


@keras.saving.register_keras_serializable(package="keras_anneal")
class Masked(keras.layers.Wrapper):
    """Wraps a layer and multiplies each prunable weight by a 0/1 mask.

    For each prunable weight `w` of the wrapped layer (the kernel of Dense,
    EinsumDense and the convolutions, both kernels of the separable
    convolutions, the embeddings of Embedding), `Masked` holds a
    non-trainable mask `m` of the same shape, initially all ones, and the
    wrapped layer computes with `w * m`. A weight with `m = 0` therefore
    contributes nothing and gets a zero gradient. Its stored value is not
    zeroed (the mask alone records what is pruned), so setting its mask back
    to 1 restores it; with plain SGD that value stays exactly as it was, while
    optimizers with momentum or weight decay may still move it, which never
    affects the output. Masks save and load with the model.

    Args:
        layer: the `keras.layers.Layer` to wrap: one of `SUPPORTED_LAYERS`
            (or a subclass), or a layer defining `get_prunable_weights()`.
        **kwargs: base `Layer` arguments such as `name`. The name defaults
            to `"masked_" + layer.name`.

    Raises:
        TypeError: if `layer` is not a Keras layer.
        ValueError: if `layer` has no prunable weight, is already wrapped,
            or has LoRA or quantization enabled.

    Example:

    >>> layer = Masked(keras.layers.Dense(2))
    >>> y = layer(np.ones((1, 3)))
    >>> layer.set_masks([np.array([[1, 0], [1, 1], [0, 1]])])
    >>> layer.sparsity
    0.3333333333333333
    """

    def __init__(self, layer, **kwargs):
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
                f"Argument `layer` must be a layer with prunable weights: {supported}, "
                "or a layer that defines `get_prunable_weights()`. "
                f"Received: layer={layer.__class__.__name__}(name='{layer.name}')"
            )
        kwargs.setdefault("name", f"masked_{layer.name}")
        # The masks take the wrapped layer's variable dtype; computing in its
        # dtype policy too keeps mixed precision layers in their precision.
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.supports_masking = layer.supports_masking
        self._weight_attributes = ()
        self._masks = []

    def build(self, input_shape=None):
        super().build(input_shape)
        variables = _prunable_variables(self.layer)
        self._weight_attributes = tuple(
            _attribute_holding(self.layer, variable) for variable in variables
        )
        self._masks = [
            self.add_weight(
                name=f"{variable.name}_mask",
                shape=variable.shape,
                dtype=variable.dtype,
                initializer="ones",
                trainable=False,
            )
            for variable in variables
        ]

    def call(self, inputs, *args, **kwargs):
        masked = {
            name: ops.multiply(vars(self.layer)[name], mask)
            for name, mask in zip(self._weight_attributes, self._masks)
        }
        with _substituted(self.layer, masked):
            return self.layer(inputs, *args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        return self.layer.compute_output_spec(*args, **kwargs)

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
        return [vars(self.layer)[name] for name in self._weight_attributes]

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
                    f"Mask '{variable.name}' of layer '{self.name}' must have shape "
                    f"{tuple(variable.shape)}. Received: shape={array.shape}"
                )
            if not np.all((array == 0) | (array == 1)):
                raise ValueError(
                    f"Mask '{variable.name}' of layer '{self.name}' must hold only "
                    f"0 and 1. Received values: {np.unique(array)[:5]}"
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
