"""Conformance specs for the element-wise optimizers (RAdam, AdaBelief, Yogi, NovoGrad, Adan, LARS, Prodigy).

Each is built with a weight-decay *schedule* and an exclusion pattern, so the
config round-trip, the hypothesis fuzz and the save/load exercise cover both;
the invalid argument differs from the family's ``learning_rate=-1.0``.
"""

import keras

from tests.conformance.spec import ClassSpec


def _decayed(**extra):
    def valid():
        schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=10, decay_rate=0.9)
        return {"weight_decay": schedule, "exclude_from_weight_decay": ["bias"], **extra}

    return valid


CLASSES = {
    "RAdam": ClassSpec(valid=_decayed(total_steps=20), invalid={"beta_2": 1.0}),
    "AdaBelief": ClassSpec(valid=_decayed(), invalid={"epsilon": 0.0}),
    "Yogi": ClassSpec(valid=_decayed(), invalid={"beta_1": -0.1}),
    "NovoGrad": ClassSpec(valid=_decayed(), invalid={"epsilon": -1e-8}),
    "Adan": ClassSpec(valid=_decayed(), invalid={"beta_3": 1.5}),
    "LARS": ClassSpec(valid=_decayed(learning_rate=0.1, nesterov=True), invalid={"momentum": 1.0}),
    "Prodigy": ClassSpec(valid=_decayed(), invalid={"d0": 0.0}),
}
