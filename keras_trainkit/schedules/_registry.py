"""The registry behind ``keras_trainkit.schedules.get``."""

import keras

from keras_trainkit.utils.registry import Registry


def _keras_schedule_get(identifier):
    """Resolve Keras's own schedules by class name or config dict."""
    if isinstance(identifier, str):
        identifier = {"class_name": identifier, "config": {}}
    return keras.optimizers.schedules.deserialize(identifier)

REGISTRY = Registry("schedules", base_class=keras.optimizers.schedules.LearningRateSchedule, keras_get=_keras_schedule_get)
register = REGISTRY.register
