"""Warm-up in front of any schedule or constant."""

from __future__ import annotations

import keras
from keras import ops

from keras_trainkit.schedules._common import (
    LearningRateSchedule,
    as_float,
    check_rate,
    check_steps,
    cosine_mix,
    linear_mix,
    progress,
    evaluate,
    resolve_schedule,
    serialize_schedule,
)
from keras_trainkit.schedules._registry import register
from keras_trainkit.utils import validation


@register(aliases=("warm_up",))
class Warmup(LearningRateSchedule):
    """Warm up from ``start_learning_rate`` to a wrapped schedule (or constant) over ``warmup_steps``.

    With ``W = warmup_steps``, ``s = start_learning_rate``, ``q = t / W`` and the
    target ``p`` (the wrapped schedule's value where the warm-up hands over)::

        linear:      lr(t) = s + (p - s) * q
        cosine:      lr(t) = s + (p - s) * (1 - cos(pi * q)) / 2
        exponential: lr(t) = s * (p / s) ** q                    (needs s > 0)

        for t >= W:  lr(t) = schedule(t - W)   if offset (default)
                     lr(t) = schedule(t)       if not offset

    ``offset=True``: the wrapped schedule starts counting when the warm-up ends,
    so ``p = schedule(0)`` and the whole decay is kept, only delayed (optax's
    ``warmup_cosine_decay_schedule`` and Keras's ``CosineDecay`` warm-up count this
    way; size the wrapped schedule for the steps *after* warm-up).
    ``offset=False``: the wrapped schedule keeps the global count, its first ``W``
    steps are replaced by the warm-up and ``p = schedule(W)`` (torch's
    ``ChainedScheduler`` style; the schedule ends at the same step as without
    warm-up). Either way the learning rate is continuous at ``t = W``.

    ``t`` counts optimizer updates (Keras passes ``optimizer.iterations``): with
    gradient accumulation one step is one applied update, not one micro-batch,
    and epochs are never counted.

    Args:
        schedule: a ``LearningRateSchedule`` (or its serialized config dict), or a
            constant learning rate >= 0.
        warmup_steps: ``W``, the warm-up length in updates, a positive integer.
        start_learning_rate: ``s``, the value at step 0, >= 0 (> 0 for exponential).
        warmup_type: ``"linear"``, ``"cosine"`` or ``"exponential"``.
        offset: whether the wrapped schedule starts counting after the warm-up.

    Example:
        >>> from keras_trainkit.schedules import CosineAnnealing
        >>> schedule = Warmup(CosineAnnealing(0.1, decay_steps=100), warmup_steps=10)
        >>> [round(float(schedule(t)), 4) for t in (0, 5, 10, 60, 110)]
        [0.0, 0.05, 0.1, 0.05, 0.0]

    Reference: Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in
    1 Hour", arXiv:1706.02677, 2017 (gradual warm-up).
    """

    def __init__(
        self,
        schedule,
        warmup_steps,
        start_learning_rate=0.0,
        warmup_type="linear",
        offset=True,
    ):
        self.schedule = resolve_schedule("schedule", schedule)
        self.warmup_steps = check_steps("warmup_steps", warmup_steps)
        self.warmup_type = validation.check_in(
            "warmup_type", warmup_type, ("linear", "cosine", "exponential")
        )
        self.start_learning_rate = check_rate(
            "start_learning_rate", start_learning_rate, allow_zero=self.warmup_type != "exponential"
        )
        self.offset = validation.check_type("offset", offset, bool)

    def __call__(self, step):
        t = as_float(step)
        warmup_steps = float(self.warmup_steps)
        if self.offset:
            target = evaluate(self.schedule, 0)
            after = evaluate(self.schedule, ops.maximum(t - warmup_steps, 0.0))
        else:
            target = evaluate(self.schedule, self.warmup_steps)
            after = evaluate(self.schedule, step)
        done, left = progress(ops.minimum(t, warmup_steps), 0.0, warmup_steps)
        start = self.start_learning_rate
        if self.warmup_type == "linear":
            warm = linear_mix(start, target, done, left)
        elif self.warmup_type == "cosine":
            warm = cosine_mix(start, target, done, left)
        else:
            warm = start * ops.power(target / start, done)
        return ops.where(t < warmup_steps, warm, after)

    def get_config(self):
        return {
            "schedule": serialize_schedule(self.schedule),
            "warmup_steps": self.warmup_steps,
            "start_learning_rate": self.start_learning_rate,
            "warmup_type": self.warmup_type,
            "offset": self.offset,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("schedule"), dict):
            config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


__all__ = ["Warmup"]
