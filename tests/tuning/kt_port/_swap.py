"""Our tuners and oracles under the names KerasTuner's own tests use.

The tests in this folder are KerasTuner's tuner and oracle tests
(keras-team/keras-tuner, Apache License 2.0, commit 417e5b5e8df9, the 1.4.7
release line; run here against the installed 1.4.8) with our classes swapped
in. The adaptations: imports point at KerasTuner's public modules (or, for
its own helper functions, at ``keras_tuner.src``), and our tuners are used
with KerasTuner's default objective (``None``) where a test relies on it,
since ours default to ``"val_accuracy"``.
"""

import keras_tuner

from keras_trainkit import tuning


class RandomSearch(tuning.RandomSearch):
    default_objective = None


class BayesianOptimization(tuning.BayesianOptimization):
    default_objective = None


class GridSearch(tuning.GridSearch):
    default_objective = None


class Hyperband(tuning.Hyperband):
    default_objective = None


Tuner = tuning.trainkit_tuner(keras_tuner.Tuner)
RandomSearchOracle = tuning.PruningRandomSearchOracle
BayesianOptimizationOracle = tuning.PruningBayesianOptimizationOracle
GridSearchOracle = tuning.PruningGridSearchOracle
HyperbandOracle = tuning.HyperbandOracle
