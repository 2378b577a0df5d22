"""`prune`: set the masks of a trained model in one shot, with any criterion."""

import keras
import numpy as np
from keras import ops

from keras_anneal import _validation
from keras_anneal import allocation as allocation_module
from keras_anneal import criteria
from keras_anneal import masking
from keras_anneal._backend import sync_backend_state
from keras_anneal.models import masked_layers
from keras_anneal.models import sparsity_report


def prune(
    model,
    criterion="magnitude",
    sparsity=0.5,
    *,
    allocation="uniform",
    data=None,
    batch_size=256,
    keep_units_connected=True,
    rounds=1,
    between_rounds=None,
    scope=None,
):
    """Prunes a model's `Masked` layers in one shot (or a few rounds), after training.

    `prune(model, criterion, sparsity, *, allocation=..., data=..., ...)`:
    the options after `sparsity` are keyword-only.

    Prunes exactly `floor(s * N)` of the `N` prunable weights (N2PS, which
    removes whole units, `floor(s * units)` of each hidden layer's), split among
    the weight tensors by the allocation (`keras_anneal.allocation`), keeping
    the weights of largest criterion score within each; weights already
    pruned stay pruned, and no output unit loses its last incoming weight
    unless `keep_units_connected=False`. Every mask is computed before any
    is set, so bad input leaves the model as it was.

    Args:
        model: a `keras.Model` holding `Masked` layers (see `prune_model`).
        criterion: a `keras_anneal.criteria.PruningCriterion` or its name
            (`"magnitude"`, `"random"`, `"largest"`). Defaults to `"magnitude"`.
        sparsity: target sparsity in [0, 1). Defaults to 0.5.
        allocation: `"uniform"`, `"global"`, `"erk"`, `"lamp"`, a dict from
            layer name to sparsity (or None), a callable, or an
            `Allocation`; see `AnnealedPruning`. Defaults to `"uniform"`,
            the one the layer-by-layer criteria (`"obs"`, `"n2ps"`) take;
            `AnnealedPruning`'s default, `"lamp"`, suits `"magnitude"`.
        data: calibration inputs (a validation split, not the test set), for
            criteria that need them (`"obs"`: L-OBS; `"n2ps"`: whole hidden
            units by significance, `sparsity` then a fraction of units).
            Defaults to `None`.
        batch_size: batch size for computing the layers' inputs on `data`.
            Defaults to 256.
        keep_units_connected: never prune an output unit's last incoming
            weight. Defaults to True.
        rounds: reach `sparsity` in this many equal steps (`s * i / rounds`),
            each computed from the weights the previous left. Defaults to 1.
        between_rounds: called as `between_rounds(model)` after each round,
            e.g. `lambda m: m.fit(x, y, epochs=1)` to retrain with the masks
            fixed (L-OBS with retraining). Defaults to `None`.
        scope: the former name of `allocation` (`"layer"` or `"global"`).
            Defaults to `None`.

    Returns:
        The `SparsityReport` of the pruned model.

    Raises:
        TypeError: if `model` is not a Keras model, or `criterion` is neither
            a criterion, its name nor its config (e.g. a sparsity passed in
            its place: pass `sparsity=` by name).
        ValueError: on a bad `criterion`, `sparsity`, `allocation` or `scope`, a model with
            no `Masked` layer, non-finite weights, missing `data` for a
            criterion that needs it, or a layer it cannot handle.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(10)]))
    >>> prune(model, "magnitude", sparsity=0.75).pruned
    30
    """
    criterion = criteria.get(criterion)
    sparsity = _validation.check_sparsity("sparsity", sparsity)
    allocation = allocation_module.get(
        allocation_module.resolve_scope(allocation, scope, default="uniform"))
    batch_size = _validation.check_step("batch_size", batch_size, positive=True)
    keep_units_connected = _validation.check_bool("keep_units_connected", keep_units_connected)
    layers = masked_layers(model)
    if not layers:
        raise ValueError(
            "Argument `model` has no `keras_anneal.Masked` layer to prune. Wrap its "
            f"layers first: `keras_anneal.prune_model(model)`. Received: model '{model.name}'"
        )
    rounds = _validation.check_step("rounds", rounds, positive=True)
    if between_rounds is not None and not callable(between_rounds):
        raise TypeError(
            "Argument `between_rounds` must be a callable taking the model, or None. "
            f"Received: between_rounds={between_rounds!r}"
        )
    if criterion.needs_data and data is None:
        raise ValueError(
            f"Argument `data` is required by criterion {criterion!r}: calibration inputs "
            "(a validation split) to compute each layer's inputs. Received: data=None"
        )
    for index in range(1, rounds + 1):
        target = sparsity * index / rounds
        _prune_once(model, layers, criterion, target, allocation, data, batch_size,
                    keep_units_connected)
        if between_rounds is not None:
            between_rounds(model)
    return sparsity_report(model)


def _prune_once(model, layers, criterion, sparsity, allocation, data, batch_size,
                keep_units_connected):
    """One round: every mask computed, then every mask set."""
    sync_backend_state(model)
    if criterion.needs_data:
        _prune_with_data(model, layers, criterion, sparsity, allocation, data, batch_size)
        return
    weights = [ops.convert_to_numpy(w) for layer in layers for w in layer.prunable_weights]
    masks = [mask for layer in layers for mask in layer.get_masks()]
    names = [layer.name for layer in layers for _ in layer.masks]
    unit_axes = [axes for layer in layers for axes in layer.unit_axes]
    sizes, capacities = allocation_module.layer_capacities(
        names, masks, unit_axes, keep_units_connected
    )
    allocation.check(sizes, sparsity, capacities)
    new_masks = iter(
        criterion.masks(
            weights,
            masks,
            sparsity,
            allocation,
            layers=names,
            keep_units_connected=keep_units_connected,
            unit_axes=unit_axes,
        )
    )
    for layer, chosen in [(layer, [next(new_masks) for _ in layer.masks]) for layer in layers]:
        layer.set_masks(chosen)


def _prune_with_data(model, layers, criterion, sparsity, allocation, data, batch_size):
    """Prunes the Dense layers from their tensors on `data`; all checked, then all set."""
    if data is None:
        raise ValueError(
            f"Argument `data` is required by criterion {criterion!r}: calibration inputs "
            "(a validation split) to compute each layer's inputs. Received: data=None"
        )
    _validation.check_calibration_inputs("data", data)
    if type(allocation) is not allocation_module.Uniform:
        raise ValueError(
            f"Argument `allocation` must be 'uniform' (scope 'layer') for criterion "
            f"{criterion!r}, which prunes layer by layer. Received: allocation={allocation!r}"
        )
    units = isinstance(criterion, criteria.NeuronSignificance)
    supported = (keras.layers.Dense,) if units else (keras.layers.Dense, keras.layers.Conv2D)
    unsupported = [
        f"{layer.name} ({type(layer.layer).__name__})"
        for layer in layers
        if not (isinstance(layer.layer, supported) and _plain_kernel(layer.layer))
    ]
    if unsupported:
        kinds = "Dense" if units else "Dense and Conv2D (channels_last, groups=1)"
        raise ValueError(
            f"Criterion {criterion!r} prunes {kinds} layers only. Received `Masked` layers "
            f"of other kinds: {unsupported}. Wrap only those: "
            f"`prune_model(model, layers=[{', '.join('keras.layers.' + c.__name__ for c in supported)}])`."
        )
    if units:
        _remove_units(model, layers, criterion, sparsity, data, batch_size)
        return
    inputs = _layer_tensors(model, layers, criterion, data, batch_size, "input")
    results = []
    for layer, layer_inputs, share in zip(layers, inputs, _layer_sparsities(layers, sparsity)):
        inner = layer.layer
        kernel = ops.convert_to_numpy(inner.kernel)
        bias = ops.convert_to_numpy(inner.bias) if inner.use_bias else None
        criteria._check_finite([kernel])
        mask = layer.get_masks()[0]
        if isinstance(inner, keras.layers.Conv2D):  # A Dense layer over the input patches.
            layer_inputs = _patches(inner, layer_inputs)
        outputs = kernel.shape[-1]
        mask, new_kernel, bias = criterion.prune_layer(
            kernel.reshape(-1, outputs), bias, mask.reshape(-1, outputs), layer_inputs, share
        )
        results.append((mask.reshape(kernel.shape), new_kernel.reshape(kernel.shape), bias))
    for layer, (mask, kernel, bias) in zip(layers, results):
        layer.layer.kernel.assign(kernel)
        if bias is not None:
            layer.layer.bias.assign(bias)
        layer.set_masks([mask])


def _layer_sparsities(layers, sparsity):
    """Each layer's sparsity, so that exactly `floor(s * N)` of all `N` kernel
    weights go: `floor(s * n)` or one more per layer (largest remainder),
    never fewer than the layer has pruned already."""
    masks = [np.asarray(layer.get_masks()[0]) for layer in layers]
    tensors = [allocation_module.WeightTensor(layer=layer.name, weight=mask, score=mask,
                                              lowest=int(np.sum(mask == 0)), highest=mask.size)
               for layer, mask in zip(layers, masks)]
    n_pruned = max(masking.pruned_count(sparsity, sum(t.size for t in tensors)),
                   sum(t.lowest for t in tensors))
    counts = allocation_module.Uniform().pruned_counts(tensors, n_pruned, sparsity, sparsity)
    return [count / t.size for count, t in zip(counts, tensors)]


def _plain_kernel(layer):
    """Whether a Dense/Conv2D kernel is one matrix over its inputs (or patches)."""
    return getattr(layer, "groups", 1) == 1 and (
        getattr(layer, "data_format", "channels_last") == "channels_last"
    )


def _patches(conv, inputs, max_rows=50000, seed=0):
    """The input patches a Conv2D multiplies by its kernel, as rows `(kh kw c_in)`.

    At most `max_rows` of them (sampled, seeded): enough for the Hessian.
    """
    patches = ops.image.extract_patches(
        ops.convert_to_tensor(inputs),
        size=conv.kernel_size,
        strides=conv.strides,
        dilation_rate=conv.dilation_rate,
        padding=conv.padding,
    )
    rows = ops.convert_to_numpy(patches).reshape(-1, int(np.prod(conv.kernel.shape[:-1])))
    if len(rows) > max_rows:
        rows = rows[np.random.default_rng(seed).choice(len(rows), max_rows, replace=False)]
    return rows


def _layer_tensors(model, layers, criterion, data, batch_size, which):
    """Each layer's `which` ("input" or "output") on `data`, as NumPy arrays."""
    try:
        extractor = keras.Model(model.inputs, [getattr(layer, which) for layer in layers])
    except Exception as error:
        raise ValueError(
            f"Argument `model` must be a Sequential or Functional model whose `Masked` "
            f"layers are each called once, for criterion {criterion!r}, which reads each "
            f"layer's {which}s. Received: model '{model.name}' of class "
            f"{type(model).__name__} ({error})"
        ) from error
    tensors = extractor.predict(data, batch_size=batch_size, verbose=0)
    tensors = [tensors] if len(layers) == 1 else list(tensors)
    for layer, values in zip(layers, tensors):
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"Argument `data` gives non-finite {which}s (NaN or inf) to layer "
                f"'{layer.name}'. Received: data with non-finite values"
            )
    return tensors


def _remove_units(model, layers, criterion, sparsity, data, batch_size):
    """N2PS: removes the least significant units of every Dense layer but the last."""
    from keras_anneal import unit_pruning

    if len(layers) < 2:
        raise ValueError(
            f"Criterion {criterion!r} removes hidden units, so it needs at least two "
            f"`Masked` Dense layers in a chain. Received: {[layer.name for layer in layers]}"
        )
    for layer, following in zip(layers, layers[1:]):
        if following.layer.kernel.shape[0] != layer.layer.units:
            raise ValueError(
                f"Criterion {criterion!r} needs each `Masked` Dense layer to feed the next: "
                f"'{layer.name}' has {layer.layer.units} units but '{following.name}' takes "
                f"{following.layer.kernel.shape[0]} inputs. Received: model '{model.name}'"
            )
    outputs = _layer_tensors(model, layers[:-1], criterion, data, batch_size, "output")
    masks = [layer.get_masks()[0] for layer in layers]
    kernels = [ops.convert_to_numpy(layer.layer.kernel) for layer in layers]
    criteria._check_finite(kernels)
    removed = []
    for index, activations in enumerate(outputs):
        alive = masks[index].any(axis=0)
        significance = unit_pruning.unit_significance(
            activations, kernels[index + 1] * masks[index + 1]
        )
        removed.append(unit_pruning.units_to_remove(significance, alive, sparsity))
    new_masks = [mask.copy() for mask in masks]
    for index, gone in enumerate(removed):
        new_masks[index][:, gone] = 0.0
        new_masks[index + 1][gone, :] = 0.0
    for index, (layer, gone) in enumerate(zip(layers, removed)):
        if layer.layer.use_bias and gone.any():
            bias = ops.convert_to_numpy(layer.layer.bias)
            layer.layer.bias.assign(np.where(gone, 0.0, bias).astype(bias.dtype))
    for layer, mask in zip(layers, new_masks):
        layer.set_masks([mask])
