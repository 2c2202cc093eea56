"""The registry behind ``keras_trainkit.schedules.get``.

Names this package lacks fall back to Keras's own schedules
(``ExponentialDecay``, ``PiecewiseConstantDecay``, ``PolynomialDecay``,
``InverseTimeDecay``, ``CosineDecay``, ``CosineDecayRestarts``), by name (class
or snake_case form) with constructor ``kwargs``, or by config dict.
"""

import keras

from keras_trainkit.utils.registry import Registry, _normalize

KERAS_SCHEDULES = (
    "ExponentialDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "InverseTimeDecay",
    "CosineDecay",
    "CosineDecayRestarts",
)


def keras_schedule_class(name):
    """Keras's own schedule class for ``name`` (any spelling), or ``None``."""
    wanted = _normalize(name)
    for class_name in KERAS_SCHEDULES:
        if _normalize(class_name) == wanted:
            return getattr(keras.optimizers.schedules, class_name)
    return None


def _keras_schedule_get(identifier):
    """Resolve Keras's own schedules from a config dict (names go through ``get``)."""
    if isinstance(identifier, str):
        raise ValueError(f"Unknown schedule. Received: identifier={identifier!r}")
    return keras.optimizers.schedules.deserialize(identifier)


class _ScheduleRegistry(Registry):
    """A ``Registry`` whose Keras fallback builds Keras schedules with the given kwargs."""

    def get(self, identifier, **kwargs):
        if isinstance(identifier, str) and self.lookup(identifier) is None:
            cls = keras_schedule_class(identifier)
            if cls is not None:
                return cls(**kwargs)
        if isinstance(identifier, dict) and kwargs:
            class_name = identifier.get("class_name")
            if isinstance(class_name, str) and self.lookup(class_name) is None:
                identifier = {**identifier, "config": {**identifier.get("config", {}), **kwargs}}
                kwargs = {}
        return super().get(identifier, **kwargs)


REGISTRY = _ScheduleRegistry(
    "schedules",
    base_class=keras.optimizers.schedules.LearningRateSchedule,
    keras_get=_keras_schedule_get,
    keras_names="config",
    fallback_names=KERAS_SCHEDULES,
)
register = REGISTRY.register
