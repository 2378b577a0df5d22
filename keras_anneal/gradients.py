"""The loss gradient of every effective weight, pruned ones included.

A `Masked` layer computes with `ŵ = w ⊙ m`, so the gradient that training
gives a pruned weight is 0. Regrowth by gradient (RigL, Evci et al. 2020,
"Rigging the Lottery: Making All Tickets Winners") needs `∂L/∂ŵ` instead:
how much the loss would change if a pruned weight came back at 0.
`effective_weight_gradients` evaluates the model with every mask at 1 and
every prunable weight at `w ⊙ m` (the same function) and differentiates
the compiled loss with respect to those values, on every backend.
"""

import inspect

import keras
from keras import ops

from keras_anneal.models import masked_layers


def effective_weight_gradients(model, x, y):
    """`∂L/∂ŵ` for the prunable weights of `model`'s `Masked` layers, in their order.

    `L` is the compiled loss of `model` (`model.compute_loss`, regularization
    included) on the batch `(x, y)`, in inference mode (Dropout off,
    BatchNormalization on its moving statistics). Nothing in the model
    changes.

    Args:
        model: a compiled `keras.Model` with `Masked` layers.
        x: a batch of inputs.
        y: the batch's targets.

    Returns:
        A list of NumPy arrays, one per prunable weight, of its shape
        (zeros for a weight the loss does not depend on).

    Example (a linear layer and mean squared error, `∂L/∂ŵ = 2 xᵀ(xŵ - y) / n`):

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(1, use_bias=False)]))
    >>> model.compile(loss="mse")
    >>> model.layers[0].layer.set_weights([np.ones((2, 1))])
    >>> model.layers[0].set_masks([np.array([[1.0], [0.0]])])  # ŵ = (1, 0)
    >>> x, y = np.array([[1.0, 2.0]]), np.array([[0.0]])
    >>> effective_weight_gradients(model, x, y)[0].ravel().tolist()
    [2.0, 4.0]
    """
    if getattr(model, "_compile_loss", None) is None and not model.losses:
        raise ValueError(
            "Argument `model` must be compiled with a loss to give gradients. "
            f"Received: model '{model.name}' with no loss; call `model.compile(loss=...)`."
        )
    layers = masked_layers(model)
    weights = [weight for layer in layers for weight in layer.prunable_weights]
    masks = [mask for layer in layers for mask in layer.masks]
    effective = [ops.multiply(w, ops.cast(m, w.dtype)) for w, m in zip(weights, masks)]
    ones = [ops.ones(mask.shape, mask.dtype) for mask in masks]
    x, y = keras.tree.map_structure(ops.convert_to_tensor, (x, y))
    # An override of `compute_loss` may predate its `training` argument.
    takes_training = "training" in inspect.signature(model.compute_loss).parameters
    inference = {"training": False} if takes_training else {}

    def loss(values):
        mapping = list(zip(weights, values)) + list(zip(masks, ones))
        # collect_losses: `add_loss` and activity regularizers count too.
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
            y_pred = model(x, training=False)
            return model.compute_loss(x=x, y=y, y_pred=y_pred, **inference)

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(effective)
            value = loss(effective)
        gradients = tape.gradient(
            value, effective, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
    elif backend == "jax":
        import jax

        gradients = jax.grad(loss)(effective)
    elif backend == "torch":
        import torch

        effective = [value.detach().requires_grad_(True) for value in effective]
        gradients = torch.autograd.grad(loss(effective), effective, allow_unused=True)
        gradients = [torch.zeros_like(v) if g is None else g for g, v in zip(gradients, effective)]
    else:
        raise NotImplementedError(
            f"effective_weight_gradients supports the tensorflow, jax and torch backends. "
            f"Received: backend={backend!r}"
        )
    return [ops.convert_to_numpy(gradient) for gradient in gradients]
