"""Post-training search of pruning masks: simulated annealing, a genetic algorithm.

Each search sets candidate masks on the model's `Masked` layers, scores them
with one compiled evaluation on calibration data (a validation split, never
the test set), and leaves the best masks it found on the model:

    model = keras_anneal.prune_model(trained_model)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    result = keras_anneal.search.simulated_annealing(model, x_val, y_val, seed=0)
    print(result.sparsity, result.metrics["accuracy"])
"""

from keras_anneal.search import costs
from keras_anneal.search import operators
from keras_anneal.search.annealing import FixedBudgetAnnealing
from keras_anneal.search.annealing import SimulatedAnnealing
from keras_anneal.search.annealing import fixed_budget_annealing
from keras_anneal.search.annealing import simulated_annealing
from keras_anneal.search.base import MaskSearch
from keras_anneal.search.base import SearchResult
from keras_anneal.search.costs import Evaluation
from keras_anneal.search.costs import RelativeLossCap
from keras_anneal.search.costs import WarmupLossCap
from keras_anneal.search.costs import loss_energy
from keras_anneal.search.costs import loss_sparsity_cost
from keras_anneal.search.genetic import GeneticAlgorithm
from keras_anneal.search.genetic import genetic_algorithm

__all__ = [
    "Evaluation",
    "FixedBudgetAnnealing",
    "GeneticAlgorithm",
    "MaskSearch",
    "RelativeLossCap",
    "SearchResult",
    "SimulatedAnnealing",
    "WarmupLossCap",
    "costs",
    "fixed_budget_annealing",
    "genetic_algorithm",
    "loss_energy",
    "loss_sparsity_cost",
    "operators",
    "simulated_annealing",
]
