"""Keras callbacks for clipping, early stopping, weight averaging and monitoring."""

from keras_trainkit.callbacks._registry import REGISTRY
from keras_trainkit.callbacks.early_stopping import EarlyStopping
from keras_trainkit.callbacks.evaluation_weights import SwapEvaluationWeights
from keras_trainkit.callbacks.gradient_clipping import GradientClipping
from keras_trainkit.callbacks.learning_curve import LearningCurveDiagnosis
from keras_trainkit.callbacks.swa import SWA
from keras_trainkit.callbacks.hyperparameter_scheduler import HyperparameterScheduler
from keras_trainkit.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from keras_trainkit.callbacks.spike_detection import SpikeDetection
from keras_trainkit.callbacks.time_budget import TimeBudget
from keras_trainkit.callbacks.training_monitor import TrainingMonitor


def get(identifier, **kwargs):
    """Return a callback from a name, a config dict or an instance.

    Names are matched case-insensitively in class-name, snake_case or alias form;
    names this package lacks are passed to Keras's own look-up. ``kwargs`` go to
    the constructor when a name is given.

    Example:
        >>> import keras_trainkit
        >>> keras_trainkit.callbacks.get(None) is None
        True
    """
    return REGISTRY.get(identifier, **kwargs)


__all__ = [
    "EarlyStopping",
    "GradientClipping",
    "LearningCurveDiagnosis",
    "SWA",
    "SwapEvaluationWeights",
    "HyperparameterScheduler",
    "ReduceLROnPlateau",
    "SpikeDetection",
    "TimeBudget",
    "TrainingMonitor",
    "get",
]
