"""DropConnect's noise on the kept weights, as `Masked(drop_connect=r)` draws it.

Bernoulli (Wan et al. 2013): each kept weight is left out with probability
`r` and the rest scaled, `w * m * b / (1 - r)`, `b ~ Bernoulli(1 - r)`; one
draw per group of examples. Gaussian: the kept weights times
`1 + sigma * e`, `e ~ N(0, 1)`, `sigma^2 = r / (1 - r)` (the same mean and
variance, as `keras.layers.GaussianDropout` matches `Dropout`), drawn per
example and weight through the pre-activation (Kingma, Salimans and
Welling 2015's local reparameterization), on a Dense layer or a plain
convolution. The mask layer holds the masks; this module only draws.
"""

import math

import keras
from keras import ops

from keras_anneal import _validation

KINDS = ("bernoulli", "gaussian")


def check_kind(kind, layer, rate, groups):
    """The noise's `kind`, validated for `layer` with `rate` drawn `groups` times a batch."""
    kind = _validation.check_choice("drop_connect_noise", kind, KINDS)
    if kind != "gaussian":
        return kind
    problem = None
    if not rate:
        problem = "a `drop_connect` rate above 0 (there is no noise to draw)"
    elif groups != 1:
        problem = "one group (it already draws per example)"
    elif _linear_op(layer) is None:
        problem = ("a `keras.layers.Dense`, or a `Conv1D`/`Conv2D`/`Conv3D` (not causal), "
                   "running its own class's `call` (and convolution)")
    elif layer.activity_regularizer is not None:
        problem = "a layer without an activity regularizer"
    if problem:
        raise ValueError(
            f"Argument `drop_connect_noise` is 'gaussian', which needs {problem}. Received: "
            f"drop_connect_noise='gaussian', drop_connect={rate!r}, "
            f"drop_connect_groups={groups!r} for "
            f"layer={layer.__class__.__name__}(name='{layer.name}')"
        )
    return kind


def _linear_op(layer):
    """`layer`'s product of inputs and kernel, `op(inputs, kernel)`, or None.

    Only where `layer`'s call is that product, a bias and an activation (the
    built-in Dense and convolutions), so the noise can be drawn in its place.
    """
    kind = type(layer)
    if isinstance(layer, keras.layers.Dense) and kind.call is keras.layers.Dense.call:
        return ops.matmul
    convolutions = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
    if not isinstance(layer, convolutions) or layer.padding == "causal":
        return None
    own_calls = {keras.layers.Conv1D.call, keras.layers.Conv2D.call, keras.layers.Conv3D.call}
    # One `convolution_op` serves the three; a subclass's own may transform the kernel.
    if kind.call in own_calls and kind.convolution_op is keras.layers.Conv2D.convolution_op:
        return layer.convolution_op
    return None


def bernoulli_masks(masks, rate, seed):
    """The masks with one draw of the noise: `m * b / (1 - rate)`."""
    return [keras.random.dropout(ops.convert_to_tensor(mask), rate, seed=seed) for mask in masks]


def in_groups(call, inputs, groups):
    """`call` on each group of rows of `inputs` (row `i` in group `i mod groups`), reassembled.

    Each group runs once, so a call that draws noise draws once per group.

    >>> import numpy as np
    >>> x = np.arange(5.0)[:, None]
    >>> ops.convert_to_numpy(in_groups(lambda rows: rows * 10, x, 2)).ravel().tolist()
    [0.0, 10.0, 20.0, 30.0, 40.0]
    """
    if groups == 1:
        return call(inputs)
    batch = ops.shape(inputs)[0]
    rows = [ops.arange(group, batch, groups) for group in range(groups)]
    outputs = [call(ops.take(inputs, group_rows, axis=0)) for group_rows in rows]
    order = ops.argsort(ops.concatenate(rows, axis=0))
    return ops.take(ops.concatenate(outputs, axis=0), order, axis=0)


def gaussian_output(layer, kernel, bias, inputs, rate, seed):
    """`layer`'s output with each example's own draw of `kernel * (1 + sigma * e)`.

    `layer` is a Dense layer or a plain convolution (`check_kind` says which
    qualify). Its pre-activation is drawn whole: normal, with mean
    `op(x, k) + bias` and variance `sigma^2 * op(x^2, k^2)` (`op` the
    layer's matrix product or convolution, `k` the masked kernel, squares
    elementwise), then the layer's activation. On a convolution each output
    position draws apart, as in Molchanov et al. 2017's variational
    dropout: the variance of a shared draw of the kernel, not the
    correlation it would give neighbouring positions. `kernel` and `bias`
    (or None) stand for the layer's own: the masked kernel, the bias as the
    mask layer passes it.

    >>> import numpy as np
    >>> dense = keras.layers.Dense(2)
    >>> _ = dense(np.ones((1, 3)))
    >>> seed = keras.random.SeedGenerator(0)
    >>> y = gaussian_output(dense, dense.kernel, dense.bias, np.ones((1000, 3)), 0.5, seed)
    >>> bool(ops.convert_to_numpy(ops.std(y[:, 0])) > 0)  # Examples differ.
    True
    """
    linear = _linear_op(layer)
    dtype = layer.compute_dtype
    kernel = ops.cast(kernel, dtype)
    inputs = ops.cast(inputs, dtype)
    mean = linear(inputs, kernel)
    variance = linear(ops.square(inputs), ops.square(kernel))
    sigma = math.sqrt(rate / (1.0 - rate))
    # The epsilon keeps the square root's gradient finite where a unit reads
    # no kept weight (variance 0); relu drops the rounding below 0 that a fast
    # convolution algorithm (Winograd, FFT) can leave in a sum of squares.
    spread = ops.sqrt(ops.add(ops.relu(variance), keras.config.epsilon()))
    noise = keras.random.normal(ops.shape(mean), seed=seed, dtype=dtype)
    outputs = ops.add(mean, ops.multiply(sigma * spread, noise))
    if bias is not None:
        bias = ops.cast(bias, dtype)
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            bias = ops.reshape(bias, (1, -1) + (1,) * (len(outputs.shape) - 2))
        outputs = ops.add(outputs, bias)
    return layer.activation(outputs) if layer.activation is not None else outputs
