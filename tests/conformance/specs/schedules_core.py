"""Conformance entries for the learning-rate schedules of ``keras_trainkit.schedules``."""

from keras_trainkit import schedules
from tests.conformance.spec import ClassSpec


def _warmup_kwargs():
    return {"schedule": schedules.CosineAnnealing(0.1, decay_steps=20, alpha=0.1), "warmup_steps": 4}


def _sequential_kwargs():
    return {
        "schedules": [schedules.LinearDecay(0.1, decay_steps=5), 0.05, schedules.StepDecay(0.05, 3)],
        "boundaries": [5, 8],
    }


CLASSES = {
    "StepDecay": ClassSpec(valid={"initial_learning_rate": 0.1, "step_size": 3}, invalid={"step_size": -1}),
    "LinearDecay": ClassSpec(valid={"initial_learning_rate": 0.1, "decay_steps": 10}, invalid={"decay_steps": -1}),
    "InverseSqrtDecay": ClassSpec(valid={"learning_rate": 0.01, "warmup_steps": 3}, invalid={"warmup_steps": -5}),
    "CosineAnnealing": ClassSpec(
        valid={"initial_learning_rate": 0.1, "decay_steps": 10, "alpha": 0.1}, invalid={"decay_steps": -1}
    ),
    "CosineAnnealingWarmRestarts": ClassSpec(
        valid={"initial_learning_rate": 0.1, "first_decay_steps": 3, "t_mul": 2.0, "m_mul": 0.9},
        invalid={"first_decay_steps": -3},
    ),
    "OneCycle": ClassSpec(valid={"max_learning_rate": 0.05, "total_steps": 10}, invalid={"pct_start": 1.5}),
    "CyclicalLearningRate": ClassSpec(
        valid={"initial_learning_rate": 0.001, "maximal_learning_rate": 0.05, "step_size": 2, "mode": "triangular2"},
        invalid={"maximal_learning_rate": 0.0},
    ),
    "Warmup": ClassSpec(valid=_warmup_kwargs, invalid={"warmup_steps": -1}),
    "SequentialSchedule": ClassSpec(valid=_sequential_kwargs, invalid={"boundaries": [8, 5]}),
    "WarmupStableDecay": ClassSpec(
        valid={"learning_rate": 0.05, "total_steps": 10, "warmup_steps": 2, "decay_steps": 4},
        invalid={"decay_steps": -1},
    ),
}
