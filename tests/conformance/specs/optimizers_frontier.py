"""Conformance specs for ADOPT, AdEMAMix, MARS, Muon, SOAP and Cautious.

The element-wise ones are built with a weight-decay schedule and an exclusion
pattern (as ``optimizers_elementwise``); MARS and Muon also with schedules for
their AdamW branch, so the config round-trip covers the serialized schedules.
"""

import keras

from tests.conformance.spec import ClassSpec


def _schedule(initial=1e-2):
    return keras.optimizers.schedules.ExponentialDecay(initial, decay_steps=10, decay_rate=0.9)


def _decayed(**extra):
    def valid():
        return {"weight_decay": _schedule(), "exclude_from_weight_decay": ["bias"], **extra}

    return valid


def _with_adam_branch(**extra):
    def valid():
        return {**_decayed(**extra)(), "adam_learning_rate": _schedule(1e-3), "adam_weight_decay": 0.05}

    return valid


def _cautious():
    return {"optimizer": keras.optimizers.Adam(1e-3), "weight_decay": _schedule(), "exclude_from_weight_decay": ["bias"]}


CLASSES = {
    "ADOPT": ClassSpec(valid=_decayed(nesterov=True), invalid={"beta_2": 1.0}),
    "AdEMAMix": ClassSpec(valid=_decayed(warmup_steps=5), invalid={"beta_3": 1.5}),
    "MARS": ClassSpec(valid=_with_adam_branch(), invalid={"gamma": -1.0}),
    "Muon": ClassSpec(
        valid=_with_adam_branch(learning_rate=0.01, consistent_rms=0.2, exclude_layers=["out/"]),
        invalid={"ns_steps": 0},
    ),
    # epsilon above float32 noise: see the SOAP docstring on the second step (the mirrored
    # run sums gradients in another order; with epsilon=1e-8 SOAP amplifies that to 1e-4).
    "SOAP": ClassSpec(
        valid=_decayed(max_block_size=4, precondition_frequency=2, epsilon=1e-3), invalid={"max_block_size": 0}
    ),
    "Cautious": ClassSpec(valid=_cautious, invalid={"weight_decay": -1.0}),
}
