"""Warm-up, stable, decay (WSD, "trapezoidal") schedule."""

from __future__ import annotations

from keras import ops

from keras_trainkit.schedules._common import (
    LearningRateSchedule,
    as_float,
    check_rate,
    check_steps,
    cosine_mix,
    linear_mix,
    progress,
)
from keras_trainkit.schedules._registry import register
from keras_trainkit.utils import validation


@register(aliases=("wsd", "trapezoidal"))
class WarmupStableDecay(LearningRateSchedule):
    """Linear warm-up, a constant plateau, then a short decay to a floor (WSD).

    With ``W = warmup_steps``, ``D = decay_steps``, ``T = total_steps``,
    ``p = learning_rate``, ``s = start_learning_rate`` and
    ``q = min((t - (T - D)) / D, 1)``::

        lr(t) = s + (p - s) * t / W                    for t < W
        lr(t) = p                                      for W <= t < T - D
        lr(t) = p * (alpha + (1 - alpha) * f(q))       for t >= T - D

        f(q) = 1 - q                  (linear)
             = (1 + cos(pi * q)) / 2  (cosine)
             = 1 - sqrt(q)            (1-sqrt, Hägele et al.'s choice)

    The plateau lets a run be extended or branched before the decay. ``t`` counts
    optimizer updates (Keras passes ``optimizer.iterations``): with gradient
    accumulation one step is one applied update, not one micro-batch, and epochs
    are never counted.

    Args:
        learning_rate: the plateau value ``p``, > 0.
        total_steps: ``T``, the whole run in updates, a positive integer.
        warmup_steps: ``W``, a non-negative integer (0: no warm-up).
        decay_steps: ``D``, a positive integer with ``W + D <= T``.
        decay_type: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.
        alpha: the floor as a fraction of ``learning_rate``, in ``[0, 1]``.
        start_learning_rate: ``s``, the value at step 0 during warm-up, >= 0.

    Example:
        >>> schedule = WarmupStableDecay(0.1, total_steps=100, warmup_steps=10, decay_steps=20)
        >>> [round(float(schedule(t)), 4) for t in (0, 5, 10, 79, 80, 90, 100)]
        [0.0, 0.05, 0.1, 0.1, 0.1, 0.05, 0.0]

    Reference: Hu et al., "MiniCPM: Unveiling the Potential of Small Language
    Models with Scalable Training Strategies", 2024; Hägele et al., "Scaling Laws
    and Compute-Optimal Training Beyond Fixed Training Durations", NeurIPS 2024.
    """

    def __init__(
        self,
        learning_rate,
        total_steps,
        warmup_steps,
        decay_steps,
        decay_type="linear",
        alpha=0.0,
        start_learning_rate=0.0,
    ):
        self.learning_rate = check_rate("learning_rate", learning_rate)
        self.total_steps = check_steps("total_steps", total_steps)
        self.warmup_steps = check_steps("warmup_steps", warmup_steps, allow_zero=True)
        self.decay_steps = check_steps("decay_steps", decay_steps)
        validation.check_condition(
            "decay_steps",
            decay_steps,
            self.warmup_steps + self.decay_steps <= self.total_steps,
            f"must satisfy warmup_steps + decay_steps <= total_steps "
            f"(warmup_steps={self.warmup_steps}, total_steps={self.total_steps})",
        )
        self.decay_type = validation.check_in("decay_type", decay_type, ("linear", "cosine", "1-sqrt"))
        validation.check_number("alpha", alpha, minimum=0.0, maximum=1.0)
        self.alpha = float(alpha)
        self.start_learning_rate = check_rate("start_learning_rate", start_learning_rate, allow_zero=True)

    def __call__(self, step):
        t = as_float(step)
        peak = self.learning_rate
        floor = self.alpha * peak
        total = float(self.total_steps)
        decay_start = float(self.total_steps - self.decay_steps)
        done, left = progress(ops.clip(t, decay_start, total), decay_start, total)
        if self.decay_type == "linear":
            value = linear_mix(peak, floor, done, left)
        elif self.decay_type == "cosine":
            value = cosine_mix(peak, floor, done, left)
        else:
            # 1 - sqrt(q) written as (1 - q) / (1 + sqrt(q)): no cancellation near q = 1.
            value = floor + (peak - floor) * (left / (1.0 + ops.sqrt(done)))
        if self.warmup_steps > 0:
            warmup_steps = float(self.warmup_steps)
            warm = linear_mix(self.start_learning_rate, peak, *progress(t, 0.0, warmup_steps))
            value = ops.where(t < warmup_steps, warm, value)
        return value

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "decay_type": self.decay_type,
            "alpha": self.alpha,
            "start_learning_rate": self.start_learning_rate,
        }


__all__ = ["WarmupStableDecay"]
