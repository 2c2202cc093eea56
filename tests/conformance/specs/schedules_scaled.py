"""Conformance overrides for ScaledSchedule (used by ReduceLROnPlateau)."""

import keras

from tests.conformance.spec import ClassSpec


def _scaled_kwargs():
    return {
        "schedule": keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=4, decay_rate=0.5),
        "scale": 0.5,
    }


CLASSES = {
    "ScaledSchedule": ClassSpec(valid=_scaled_kwargs, invalid={"scale": -1.0}),
}
