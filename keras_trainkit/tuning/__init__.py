"""KerasTuner search spaces, pruning and trial runners for whole training recipes.

Built on KerasTuner, not instead of it: the spaces register ordinary
``keras_tuner.HyperParameters``; :class:`RecipeHyperModel` is a
``keras_tuner.HyperModel``; :class:`TrainkitTunerMixin` (or
:func:`trainkit_tuner`) gives any ``keras_tuner.Tuner`` crash-safe resume,
per-trial process isolation, a time budget and per-epoch reporting to its
oracle, and the pruning oracles stop bad trials early.

Modules import one way: ``pruning`` (pure rules) -> ``oracles``;
``epoch_checkpoint`` -> ``trial_plan`` -> ``isolation``; all of them ->
``tuners``.

``OptunaSearch`` and ``OptunaOracle`` (Optuna-backed search) are imported on
first use, since Optuna is optional (``pip install "keras-trainkit[optuna]"``).
"""

import importlib

from keras_trainkit.tuning.ensemble import ensemble_best_models
from keras_trainkit.tuning.epoch_checkpoint import EpochCheckpoint
from keras_trainkit.tuning.oracles import (
    HyperbandOracle,
    PruningBayesianOptimizationOracle,
    PruningGridSearchOracle,
    PruningOracleMixin,
    PruningRandomSearchOracle,
    seed_oracle,
)
from keras_trainkit.tuning.parallel import parallel_search
from keras_trainkit.tuning.pruning import ASHAPruner, MedianPruner, Pruner, get_pruner
from keras_trainkit.tuning.recipe import RecipeHyperModel
from keras_trainkit.tuning.report import summary_table, write_report
from keras_trainkit.tuning.trial_models import load_trial_model
from keras_trainkit.tuning.trial_plan import EpochReporter, NonFiniteLoss
from keras_trainkit.tuning.tuners import (
    BayesianOptimization,
    GridSearch,
    Hyperband,
    RandomSearch,
    TrainkitTunerMixin,
    trainkit_tuner,
)
from keras_trainkit.tuning.architectures import CNNSpace, MLPSpace
from keras_trainkit.tuning.spaces import (
    InitializerSpace,
    OptimizerSpace,
    Param,
    RegularizationSpace,
    ScheduleSpace,
    Space,
    TrainingSpace,
    optimizer_families,
)

__all__ = [
    "ASHAPruner",
    "BayesianOptimization",
    "CNNSpace",
    "EpochCheckpoint",
    "EpochReporter",
    "GridSearch",
    "Hyperband",
    "HyperbandOracle",
    "InitializerSpace",
    "MLPSpace",
    "MedianPruner",
    "NonFiniteLoss",
    "OptimizerSpace",
    "Param",
    "Pruner",
    "PruningBayesianOptimizationOracle",
    "PruningGridSearchOracle",
    "PruningOracleMixin",
    "PruningRandomSearchOracle",
    "RandomSearch",
    "RecipeHyperModel",
    "RegularizationSpace",
    "ScheduleSpace",
    "Space",
    "TrainingSpace",
    "TrainkitTunerMixin",
    "ensemble_best_models",
    "get_pruner",
    "load_trial_model",
    "optimizer_families",
    "parallel_search",
    "seed_oracle",
    "summary_table",
    "trainkit_tuner",
    "write_report",
]

# Optuna is optional: these names import their module (and Optuna) on first use.
_OPTUNA_NAMES = {"OptunaSearch": "keras_trainkit.tuning.optuna_search",
                 "OptunaOracle": "keras_trainkit.tuning.optuna_oracle"}


def __getattr__(name):
    if name in _OPTUNA_NAMES:
        return getattr(importlib.import_module(_OPTUNA_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
