"""KerasTuner search spaces, pruning and trial runners for whole training recipes.

Built on KerasTuner, not instead of it: the spaces register ordinary
``keras_tuner.HyperParameters``; :class:`RecipeHyperModel` is a
``keras_tuner.HyperModel``; the pruning tuners are ``keras_tuner.Tuner``
subclasses with pruning oracles, crash-safe resume and optional per-trial
process isolation.
"""

from keras_trainkit.tuning.ensemble import ensemble_best_models
from keras_trainkit.tuning.pruning import (
    ASHAPruner,
    MedianPruner,
    Pruner,
    PruningBayesianOptimizationOracle,
    PruningOracleMixin,
    PruningRandomSearchOracle,
    get_pruner,
    seed_oracle,
)
from keras_trainkit.tuning.parallel import parallel_search
from keras_trainkit.tuning.recipe import RecipeHyperModel
from keras_trainkit.tuning.report import summary_table, write_report
from keras_trainkit.tuning.tuners import (
    BayesianOptimization,
    EpochCheckpoint,
    NonFiniteLoss,
    RandomSearch,
    TrainkitTunerMixin,
)
from keras_trainkit.tuning.spaces import (
    CNNSpace,
    InitializerSpace,
    MLPSpace,
    OptimizerSpace,
    Param,
    RegularizationSpace,
    ScheduleSpace,
    Space,
    TrainingSpace,
)

__all__ = [
    "ASHAPruner",
    "CNNSpace",
    "InitializerSpace",
    "MLPSpace",
    "MedianPruner",
    "OptimizerSpace",
    "Param",
    "BayesianOptimization",
    "EpochCheckpoint",
    "NonFiniteLoss",
    "Pruner",
    "PruningBayesianOptimizationOracle",
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
    "parallel_search",
    "seed_oracle",
    "summary_table",
    "write_report",
]
