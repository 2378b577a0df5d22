"""Callbacks that search the masks further when `fit` ends."""

import keras

from keras_anneal import search
from keras_anneal._backend import sync_backend_state


class _SearchAtTrainEnd(keras.callbacks.Callback):
    """Runs a mask search on the given calibration data when `fit` ends."""

    def __init__(self, mask_search, x, y=None, sample_weight=None):
        super().__init__()
        self.search = mask_search
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.result = None

    def on_train_begin(self, logs=None):
        # What the search would refuse is refused now, not after training.
        self.search.check(self.model, self.x, self.y, self.sample_weight)

    def on_train_end(self, logs=None):
        sync_backend_state(self.model)
        self.result = self.search.run(self.model, self.x, self.y, self.sample_weight)


class SimulatedAnnealingPruning(_SearchAtTrainEnd):
    """Prunes further by simulated annealing when `fit` ends.

    At the end of training, runs `keras_anneal.search.SimulatedAnnealing`
    on the calibration data `x, y` (a validation split, not the test set),
    starting from the masks training left. The masks found stay on the
    model; the `SearchResult` is in `self.result`.

    Args:
        x, y, sample_weight: the calibration data.
        **kwargs: arguments of `keras_anneal.search.SimulatedAnnealing`,
            checked here, before training starts.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)]))
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    >>> search = SimulatedAnnealingPruning(x[:16], y[:16], iterations=10, seed=0, verbose=0)
    >>> _ = model.fit(x, y, epochs=1, verbose=0, callbacks=[search])
    >>> search.result.sparsity == keras_anneal.sparsity_report(model).sparsity > 0
    True
    """

    def __init__(self, x, y=None, sample_weight=None, **kwargs):
        super().__init__(search.SimulatedAnnealing(**kwargs), x, y, sample_weight)


class GeneticPruning(_SearchAtTrainEnd):
    """Prunes further by a genetic algorithm when `fit` ends.

    At the end of training, runs `keras_anneal.search.GeneticAlgorithm`
    on the calibration data `x, y` (a validation split, not the test set),
    starting from the masks training left. The masks found stay on the
    model; the `SearchResult` is in `self.result`.

    Args:
        x, y, sample_weight: the calibration data.
        **kwargs: arguments of `keras_anneal.search.GeneticAlgorithm`,
            checked here, before training starts.

    Example:

    >>> model = keras_anneal.prune_model(keras.Sequential(
    ...     [keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(1)]))
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x, y = np.random.rand(64, 8), np.random.rand(64, 1)
    >>> search = GeneticPruning(x[:16], y[:16], generations=2, population_size=4,
    ...                         tournament_size=2, seed=0, verbose=0)
    >>> _ = model.fit(x, y, epochs=1, verbose=0, callbacks=[search])
    >>> search.result.sparsity == keras_anneal.sparsity_report(model).sparsity > 0
    True
    """

    def __init__(self, x, y=None, sample_weight=None, **kwargs):
        super().__init__(search.GeneticAlgorithm(**kwargs), x, y, sample_weight)
