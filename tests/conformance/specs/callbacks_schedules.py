"""Conformance overrides for HyperparameterScheduler and ReduceLROnPlateau.

ReduceLROnPlateau passes with the family defaults (``patience=-1`` is invalid;
the family exercise monitors ``val_loss`` with an SGD float learning rate).
"""

import keras

from tests.conformance.spec import ClassSpec


def _hyperparameter_scheduler_kwargs():
    return {
        "hyperparameter": "learning_rate",
        "schedule": keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=4, decay_rate=0.5),
    }


CLASSES = {
    "HyperparameterScheduler": ClassSpec(
        valid=_hyperparameter_scheduler_kwargs,
        invalid={"frequency": "batch"},
    ),
}
