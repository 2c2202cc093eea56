"""Join schedules at step boundaries."""

from __future__ import annotations

import keras
from keras import ops

from keras_trainkit.schedules._common import (
    LearningRateSchedule,
    as_float,
    check_steps,
    evaluate,
    resolve_schedule,
    serialize_schedule,
)
from keras_trainkit.schedules._registry import register
from keras_trainkit.utils import validation


@register(aliases=("sequential", "join_schedules", "sequential_lr"))
class SequentialSchedule(LearningRateSchedule):
    """Run schedules one after another, switching at step boundaries; each restarts its count.

    With boundaries ``b_1 < b_2 < ... < b_{n-1}`` (and ``b_0 = 0``)::

        lr(t) = schedules[i](t - b_i)    for b_i <= t < b_{i+1}

    so every schedule sees its own step 0 when it takes over. This is
    ``torch.optim.lr_scheduler.SequentialLR(schedulers, milestones=boundaries)``
    and ``optax.join_schedules``. Nothing forces the pieces to meet: a jump at a
    boundary is kept (that is how a restart is written). ``t`` counts optimizer
    updates (Keras passes ``optimizer.iterations``): with gradient accumulation one
    step is one applied update, not one micro-batch, and epochs are never counted.

    Args:
        schedules: a non-empty list of ``LearningRateSchedule`` objects (or their
            serialized config dicts) or constants >= 0.
        boundaries: ``len(schedules) - 1`` strictly increasing positive integers,
            the global steps at which the next schedule takes over.

    Example:
        >>> from keras_trainkit.schedules import LinearDecay
        >>> schedule = SequentialSchedule([0.1, LinearDecay(0.1, 100)], boundaries=[50])
        >>> [round(float(schedule(t)), 4) for t in (0, 49, 50, 100, 150)]
        [0.1, 0.1, 0.1, 0.05, 0.0]

    Reference: the staircase and "constant then decay" recipes of the course
    notes; Goyal et al. 2017 (warm-up then step decay).
    """

    def __init__(self, schedules, boundaries):
        if not isinstance(schedules, (list, tuple)):
            raise TypeError(
                "Argument `schedules` must be a list of schedules or constants, not "
                f"{type(schedules).__name__}. Received: schedules={schedules!r}"
            )
        validation.check_condition("schedules", schedules, len(schedules) > 0, "must not be empty")
        self.schedules = [resolve_schedule(f"schedules[{i}]", s) for i, s in enumerate(schedules)]
        if not isinstance(boundaries, (list, tuple)):
            raise TypeError(
                "Argument `boundaries` must be a list of integers, not "
                f"{type(boundaries).__name__}. Received: boundaries={boundaries!r}"
            )
        validation.check_condition(
            "boundaries",
            boundaries,
            len(boundaries) == len(self.schedules) - 1,
            f"must hold len(schedules) - 1 = {len(self.schedules) - 1} steps",
        )
        self.boundaries = [check_steps(f"boundaries[{i}]", b) for i, b in enumerate(boundaries)]
        validation.check_condition(
            "boundaries",
            boundaries,
            all(a < b for a, b in zip(self.boundaries, self.boundaries[1:])),
            "must be strictly increasing",
        )

    def __call__(self, step):
        t = as_float(step)
        starts = [0, *self.boundaries]
        value = evaluate(self.schedules[-1], ops.maximum(t - starts[-1], 0.0))
        for start, end, schedule in zip(starts[-2::-1], self.boundaries[::-1], self.schedules[-2::-1]):
            piece = evaluate(schedule, ops.maximum(t - start, 0.0))
            value = ops.where(t < end, piece, value)
        return value

    def get_config(self):
        return {
            "schedules": [serialize_schedule(s) for s in self.schedules],
            "boundaries": list(self.boundaries),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedules"] = [
            keras.saving.deserialize_keras_object(s) if isinstance(s, dict) else s
            for s in config["schedules"]
        ]
        return cls(**config)


__all__ = ["SequentialSchedule"]
