"""`DropoutScaling`: Dropout kept while pruning, its rate following the connections left."""

import math
import warnings

import keras
from keras import ops

from keras_anneal import _validation
from keras_anneal import masking
from keras_anneal._backend import sync_backend_state
from keras_anneal.layers import Masked


class DropoutScaling(keras.callbacks.Callback):
    """Keeps Dropout while pruning, its rate scaled to the connections left.

    Han et al. (2015): a pruned layer has fewer connections to co-adapt, so
    the Dropout guarding it should drop less,
    `rate = rate_0 * sqrt(C_r / C_0)`, with `C_r / C_0` the kept fraction of
    the `Masked` layer that the Dropout feeds. Every `frequency` updates the
    rates are recomputed; when one moves by `resolution` or more, the
    training step is rebuilt (`make_train_function(force=True)`), since a
    compiled step holds the rate as a constant. Put it after
    `AnnealedPruning` in the callbacks.

    Args:
        pairs: dict from Dropout layer name to the name of the `Masked` layer
            it guards, or `None` to pair each Dropout with the next `Masked`
            layer in the model's order. Defaults to `None`.
        frequency: optimizer updates between checks, > 0. Defaults to 50.
        resolution: smallest change of rate that rebuilds the step, > 0.
            Defaults to 0.01.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential([keras.Input((8,)),
    ...     keras.layers.Dropout(0.5), keras.layers.Dense(4)]))
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x, y = np.random.rand(64, 8), np.random.rand(64, 4)
    >>> _ = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[
    ...     keras_anneal.AnnealedPruning(keras_anneal.schedules.ConstantSparsity(0.75), frequency=1),
    ...     DropoutScaling(frequency=1)])
    >>> round(model.layers[0].rate, 2)  # 0.5 * sqrt(0.25)
    0.25
    """

    def __init__(self, pairs=None, frequency=50, resolution=0.01):
        super().__init__()
        if pairs is not None and not isinstance(pairs, dict):
            raise TypeError(
                "Argument `pairs` must be a dict from Dropout layer names to Masked "
                f"layer names, or None. Received: pairs={pairs!r}"
            )
        self.pairs = pairs
        self.frequency = _validation.check_step("frequency", frequency, positive=True)
        self.resolution = _validation.check_positive("resolution", resolution)
        self._base_rates = {}

    def on_train_begin(self, logs=None):
        layers = list(self.model._flatten_layers(include_self=False, recursive=True))
        by_name = {layer.name: layer for layer in layers}
        if self.pairs is None:
            pairs, waiting = [], []
            for layer in layers:
                if isinstance(layer, keras.layers.Dropout):
                    waiting.append(layer)
                elif isinstance(layer, Masked):
                    pairs += [(dropout, layer) for dropout in waiting]
                    waiting = []
            if not pairs:
                raise ValueError(
                    "Argument `pairs` is needed: DropoutScaling found no Dropout layer "
                    "followed by a `Masked` layer in the model's order (a Dropout inside a "
                    "wrapped layer comes after its wrapper); pass `pairs={dropout name: "
                    "masked name}`. Received: pairs=None"
                )
            if waiting:
                warnings.warn(
                    f"DropoutScaling leaves {[d.name for d in waiting]} at their rates: no "
                    "`Masked` layer follows them. Pass `pairs=` to pair them.",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            missing = sorted(
                name for pair in self.pairs.items() for name in pair if name not in by_name
            )
            if missing:
                raise ValueError(
                    f"Argument `pairs` names layers that are not in the model: {missing}. "
                    f"Received: pairs={self.pairs!r}"
                )
            pairs = [(by_name[d], by_name[m]) for d, m in self.pairs.items()]
            wrong = [
                f"{d.name}: {m.name}" for d, m in pairs
                if not isinstance(d, keras.layers.Dropout) or not isinstance(m, Masked)
            ]
            if wrong:
                raise ValueError(
                    "Argument `pairs` must map Dropout layers to `Masked` layers. "
                    f"Received: {wrong} in pairs={self.pairs!r}"
                )
        self._pairs = pairs
        for dropout, _ in pairs:
            self._base_rates.setdefault(id(dropout), dropout.rate)
        self._last_check = None
        self._epoch_begin_step = 0

    def on_epoch_begin(self, epoch, logs=None):
        # Read at epoch boundaries only: mid-epoch, the JAX trainer holds the
        # optimizer's variables outside them.
        self._epoch_begin_step = int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        step = self._epoch_begin_step + batch
        due = step - step % self.frequency
        if due == self._last_check or not self._pairs:
            return
        self._last_check = due
        sync_backend_state(self.model)
        changed = False
        for dropout, masked in self._pairs:
            pruned, total = masking.count_pruned(masked.get_masks())
            rate = self._base_rates[id(dropout)] * math.sqrt((total - pruned) / total)
            if abs(rate - dropout.rate) >= self.resolution:
                dropout.rate = rate
                changed = True
        if changed:
            self.model.make_train_function(force=True)
