"""keras-anneal: annealed pruning for Keras 3.

Wrap a model's layers with `prune_model`, add `AnnealedPruning` to `fit`, and
the network sheds its least useful connections while it trains:

    model = keras_anneal.prune_model(model)
    model.compile(...)
    model.fit(x, y, epochs=12, callbacks=[keras_anneal.AnnealedPruning(
        keras_anneal.schedules.FSA(final_sparsity=0.9, end_fraction=0.5))])
    plain = keras_anneal.strip(model)
"""

from keras_anneal import allocation
from keras_anneal import budget
from keras_anneal import callbacks
from keras_anneal import criteria
from keras_anneal import gradients
from keras_anneal import masking
from keras_anneal import schedules
from keras_anneal import search
from keras_anneal.callbacks import AnnealedPruning
from keras_anneal.budget import BudgetStop
from keras_anneal.dropout_scaling import DropoutScaling
from keras_anneal.compaction import compact
from keras_anneal.datasets import load_mnist
from keras_anneal.layers import SUPPORTED_LAYERS
from keras_anneal.layers import Masked
from keras_anneal.layers import register_prunable_layer
from keras_anneal.models import LayerSparsity
from keras_anneal.models import SparsityReport
from keras_anneal.models import masked_layers
from keras_anneal.models import prune_model
from keras_anneal.models import sparsity_report
from keras_anneal.models import strip
from keras_anneal.one_shot import prune
from keras_anneal.reversible import Regrowth
from keras_anneal.reversible import TemporaryRemoval
from keras_anneal.search_callbacks import GeneticPruning
from keras_anneal.search_callbacks import SimulatedAnnealingPruning
from keras_anneal.sensitivity import SensitivityScan
from keras_anneal.sensitivity import sensitivity_scan

__version__ = "0.1.0"

__all__ = [
    "AnnealedPruning",
    "BudgetStop",
    "DropoutScaling",
    "GeneticPruning",
    "LayerSparsity",
    "Regrowth",
    "TemporaryRemoval",
    "Masked",
    "SUPPORTED_LAYERS",
    "SensitivityScan",
    "SimulatedAnnealingPruning",
    "SparsityReport",
    "allocation",
    "budget",
    "callbacks",
    "compact",
    "criteria",
    "gradients",
    "load_mnist",
    "masked_layers",
    "masking",
    "prune",
    "prune_model",
    "register_prunable_layer",
    "schedules",
    "search",
    "sensitivity_scan",
    "sparsity_report",
    "strip",
]
