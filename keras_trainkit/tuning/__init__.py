"""KerasTuner search spaces, pruning and trial runners for whole training recipes.

Built on KerasTuner, not instead of it: the spaces register ordinary
``keras_tuner.HyperParameters``; :class:`RecipeHyperModel` is a
``keras_tuner.HyperModel``; the pruning tuners are ``keras_tuner.Tuner``
subclasses with pruning oracles.
"""

from keras_trainkit.tuning.pruning import (
    ASHAPruner,
    MedianPruner,
    PrunedBayesianOptimization,
    PrunedRandomSearch,
    Pruner,
    PruningBayesianOptimizationOracle,
    PruningOracleMixin,
    PruningRandomSearchOracle,
    PruningTunerMixin,
    get_pruner,
)
from keras_trainkit.tuning.recipe import RecipeHyperModel
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
    "PrunedBayesianOptimization",
    "PrunedRandomSearch",
    "Pruner",
    "PruningBayesianOptimizationOracle",
    "PruningOracleMixin",
    "PruningRandomSearchOracle",
    "PruningTunerMixin",
    "RecipeHyperModel",
    "RegularizationSpace",
    "ScheduleSpace",
    "Space",
    "TrainingSpace",
    "get_pruner",
]
