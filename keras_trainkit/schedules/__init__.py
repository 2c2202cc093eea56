"""Learning-rate schedules (``keras.optimizers.schedules.LearningRateSchedule`` subclasses).

Every schedule is a pure function of ``step``, the number of optimizer updates
already applied (Keras passes ``optimizer.iterations``): under gradient
accumulation a step is one applied update, not one micro-batch, and epochs are
never counted (convert with :func:`epochs_to_steps`). Keras's own schedules are
re-exported here and resolved by :func:`get` too.

Saving and loading: every schedule here is registered with Keras as
``keras_trainkit>ClassName``, so a model that uses one saves with
``model.save("m.keras")`` (inside its optimizer). To load it, run ``import
keras_trainkit`` first in the loading process: the import registers the classes, and
then ``keras.models.load_model("m.keras")`` needs no ``custom_objects``. Without the
import, Keras cannot find the classes (a ``TypeError``, "Could not locate class").
"""

from keras.optimizers.schedules import (
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    LearningRateSchedule,
    PiecewiseConstantDecay,
    PolynomialDecay,
)

from keras_trainkit.schedules._registry import REGISTRY
from keras_trainkit.schedules.cosine import CosineAnnealing, CosineAnnealingWarmRestarts
from keras_trainkit.schedules.cyclical import CyclicalLearningRate
from keras_trainkit.schedules.decay import InverseSqrtDecay, LinearDecay, StepDecay, epochs_to_steps
from keras_trainkit.schedules.one_cycle import OneCycle
from keras_trainkit.schedules.scaled import ScaledSchedule
from keras_trainkit.schedules.plot import plot_schedule, schedule_values
from keras_trainkit.schedules.sequential import SequentialSchedule
from keras_trainkit.schedules.warmup import Warmup
from keras_trainkit.schedules.warmup_stable_decay import WarmupStableDecay


def get(identifier, **kwargs):
    """Return a schedule from a name, a config dict or an instance.

    Names are matched case-insensitively in class-name, snake_case or alias form;
    Keras's own schedules (``ExponentialDecay``, ``PiecewiseConstantDecay``,
    ``PolynomialDecay``, ``InverseTimeDecay``, ``CosineDecay``,
    ``CosineDecayRestarts``) are built from their name and ``kwargs`` or from a
    config dict. ``kwargs`` go to the constructor when a name is given.

    Example:
        >>> import keras_trainkit
        >>> keras_trainkit.schedules.get(None) is None
        True
        >>> type(keras_trainkit.schedules.get("one_cycle", max_learning_rate=0.1, total_steps=100)).__name__
        'OneCycle'
        >>> type(keras_trainkit.schedules.get("exponential_decay", initial_learning_rate=0.1,
        ...      decay_steps=10, decay_rate=0.5)).__name__
        'ExponentialDecay'
    """
    return REGISTRY.get(identifier, **kwargs)


__all__ = [
    "get",
    "epochs_to_steps",
    "plot_schedule",
    "schedule_values",
    # keras_trainkit schedules
    "CosineAnnealing",
    "CosineAnnealingWarmRestarts",
    "CyclicalLearningRate",
    "InverseSqrtDecay",
    "LinearDecay",
    "OneCycle",
    "ScaledSchedule",
    "SequentialSchedule",
    "StepDecay",
    "Warmup",
    "WarmupStableDecay",
    # Keras's own, re-exported
    "LearningRateSchedule",
    "CosineDecay",
    "CosineDecayRestarts",
    "ExponentialDecay",
    "InverseTimeDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
]
