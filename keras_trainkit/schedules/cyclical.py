"""Cyclical learning rates (Smith 2017), like torch's ``CyclicLR``."""

from __future__ import annotations

import math

from keras import ops

from keras_trainkit.schedules._common import (
    LearningRateSchedule,
    as_float,
    check_rate,
    check_steps,
    floor_div,
)
from keras_trainkit.schedules._registry import register
from keras_trainkit.utils import validation


@register(aliases=("clr", "cyclic", "cyclic_lr"))
class CyclicalLearningRate(LearningRateSchedule):
    """Cyclical learning rate: a triangle wave between two bounds (Smith 2017).

    With ``u = step_size`` updates up, ``d = step_size_down`` down, ``L = u + d``,
    ``c = floor(t / L)`` (cycles done) and ``x = (t - c * L) / L``::

        h(t)  = x / (u / L)                   if x <= u / L   (rising)
              = (x - 1) / (u / L - 1)         otherwise       (falling)
        lr(t) = initial + (maximal - initial) * h(t) * scale(t)

        triangular:  scale = 1
        triangular2: scale = 1 / 2 ** c          (the amplitude halves every cycle)
        exp_range:   scale = gamma ** t

    This is ``torch.optim.lr_scheduler.CyclicLR`` (``base_lr`` is
    ``initial_learning_rate``, ``max_lr`` is ``maximal_learning_rate``,
    ``step_size_up`` is ``step_size``). ``t`` counts optimizer updates (Keras
    passes ``optimizer.iterations``): with gradient accumulation one step is one
    applied update, not one micro-batch, and epochs are never counted; Smith
    suggests ``step_size`` of 2 to 10 epochs' worth of updates.

    Args:
        initial_learning_rate: the lower bound (``base_lr``), >= 0.
        maximal_learning_rate: the upper bound (``max_lr``), > ``initial_learning_rate``.
        step_size: updates in the rising half-cycle, a positive integer.
        step_size_down: updates in the falling half-cycle; ``None`` means ``step_size``.
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: the per-step factor of ``exp_range``, in ``(0, 1]``.

    Example:
        >>> schedule = CyclicalLearningRate(1e-3, 1e-2, step_size=10)
        >>> [round(float(schedule(t)), 5) for t in (0, 5, 10, 15, 20)]
        [0.001, 0.0055, 0.01, 0.0055, 0.001]

    Reference: Smith, "Cyclical Learning Rates for Training Neural Networks",
    WACV 2017.
    """

    def __init__(
        self,
        initial_learning_rate,
        maximal_learning_rate,
        step_size,
        step_size_down=None,
        mode="triangular",
        gamma=1.0,
    ):
        self.initial_learning_rate = check_rate(
            "initial_learning_rate", initial_learning_rate, allow_zero=True
        )
        self.maximal_learning_rate = check_rate("maximal_learning_rate", maximal_learning_rate)
        validation.check_condition(
            "maximal_learning_rate",
            maximal_learning_rate,
            self.maximal_learning_rate > self.initial_learning_rate,
            f"must be greater than `initial_learning_rate` ({self.initial_learning_rate})",
        )
        self.step_size = check_steps("step_size", step_size)
        self.step_size_down = None if step_size_down is None else check_steps("step_size_down", step_size_down)
        self.mode = validation.check_in("mode", mode, ("triangular", "triangular2", "exp_range"))
        validation.check_number("gamma", gamma, minimum=0.0, maximum=1.0, min_inclusive=False)
        self.gamma = float(gamma)

    def __call__(self, step):
        t = as_float(step)
        up = float(self.step_size)
        length = up + float(self.step_size_down or self.step_size)
        cycles = floor_div(t, length)  # exact at cycle ends on XLA too
        into = t - cycles * length  # steps into the current cycle, exact for integer steps
        height = ops.where(into <= up, into / up, (length - into) / (length - up))
        if self.mode == "triangular2":
            height = height / ops.power(2.0, cycles)
        elif self.mode == "exp_range":
            # gamma ** t as exp(t * log(gamma)) with log(gamma) taken in float64:
            # float32 rounding of a gamma near 1 would shift log(gamma) noticeably.
            height = height * ops.exp(t * math.log(self.gamma))
        return self.initial_learning_rate + (self.maximal_learning_rate - self.initial_learning_rate) * height

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "maximal_learning_rate": self.maximal_learning_rate,
            "step_size": self.step_size,
            "step_size_down": self.step_size_down,
            "mode": self.mode,
            "gamma": self.gamma,
        }


__all__ = ["CyclicalLearningRate"]
