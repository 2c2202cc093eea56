"""Cosine annealing with a floor, and its warm-restart (SGDR) form."""

from __future__ import annotations

import math

from keras import ops

from keras_trainkit.schedules._common import (
    AnnealToFloor,
    LearningRateSchedule,
    as_float,
    check_rate,
    check_steps,
    cosine_mix,
    floor_div,
    progress,
)
from keras_trainkit.schedules._registry import register
from keras_trainkit.utils import validation


@register(aliases=("cosine", "cosine_annealing_lr"))
class CosineAnnealing(AnnealToFloor):
    """Cosine annealing from ``initial_learning_rate`` down to a floor ``alpha * initial_learning_rate``.

    Formula (the course notes' ``eta_t = alpha + (1 - alpha)(1 + cos(pi t / T)) / 2``
    scaled by the initial learning rate; constant at the floor after ``T``)::

        lr(t) = initial_learning_rate * (alpha + (1 - alpha) * (1 + cos(pi * min(t, T) / T)) / 2)

    It equals ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T,
    eta_min=alpha * initial_learning_rate)`` for ``t <= T`` (torch keeps
    following the cosine back up after ``T``; this schedule stays at the floor).
    For warm-up wrap it in :class:`Warmup`; for restarts use
    :class:`CosineAnnealingWarmRestarts`. ``t`` counts optimizer updates (Keras
    passes ``optimizer.iterations``): with gradient accumulation one step is one
    applied update, not one micro-batch, and epochs are never counted.

    Args:
        initial_learning_rate: the learning rate at step 0, > 0.
        decay_steps: ``T``, the number of updates to anneal over, a positive integer.
        alpha: the floor as a fraction of ``initial_learning_rate``, in ``[0, 1]``
            (default 0: anneal to zero).

    Example:
        >>> schedule = CosineAnnealing(0.1, decay_steps=100, alpha=0.1)
        >>> [round(float(schedule(t)), 4) for t in (0, 50, 100, 500)]
        [0.1, 0.055, 0.01, 0.01]

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR 2017.
    """

    mix = staticmethod(cosine_mix)


@register(aliases=("sgdr", "cosine_restarts"))
class CosineAnnealingWarmRestarts(LearningRateSchedule):
    """Cosine annealing that restarts at the peak, with growing cycles (SGDR).

    Cycle ``i`` (from 0) lasts ``T_i = first_decay_steps * t_mul ** i`` updates and
    starts at ``S_i = sum_{j < i} T_j``. Inside it, with ``tau = (t - S_i) / T_i``::

        peak_i = initial_learning_rate * m_mul ** i
        lr(t)  = peak_i * (alpha + (1 - alpha) * (1 + cos(pi * tau)) / 2)

    With ``m_mul = 1`` this is ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
    T_0=first_decay_steps, T_mult=t_mul, eta_min=alpha * initial_learning_rate)``
    (torch needs an integer ``T_mult``; a real ``t_mul >= 1`` works here). The floor
    scales with the peak (``alpha * peak_i``), as in Keras's ``CosineDecayRestarts``.
    ``t`` counts optimizer updates (Keras passes ``optimizer.iterations``): with
    gradient accumulation one step is one applied update, not one micro-batch, and
    epochs are never counted.

    Args:
        initial_learning_rate: the peak of the first cycle, > 0.
        first_decay_steps: ``T_0``, the length of the first cycle in updates, a
            positive integer.
        t_mul: the factor by which each cycle is longer than the previous, >= 1.
        m_mul: the factor applied to the peak at each restart, in ``(0, 1]``.
        alpha: the floor as a fraction of the cycle's peak, in ``[0, 1]``.

    Example:
        >>> schedule = CosineAnnealingWarmRestarts(0.1, first_decay_steps=10, t_mul=2.0)
        >>> [round(float(schedule(t)), 4) for t in (0, 5, 10, 20, 30)]
        [0.1, 0.05, 0.1, 0.05, 0.1]

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR 2017.
    """

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=1.0, m_mul=1.0, alpha=0.0):
        self.initial_learning_rate = check_rate("initial_learning_rate", initial_learning_rate)
        self.first_decay_steps = check_steps("first_decay_steps", first_decay_steps)
        validation.check_number("t_mul", t_mul, minimum=1.0)
        validation.check_number("m_mul", m_mul, minimum=0.0, maximum=1.0, min_inclusive=False)
        validation.check_number("alpha", alpha, minimum=0.0, maximum=1.0)
        self.t_mul = float(t_mul)
        self.m_mul = float(m_mul)
        self.alpha = float(alpha)

    def _growth(self, cycle):
        """``t_mul ** cycle`` as float32; exact (integer arithmetic) for an integer ``t_mul``."""
        if float(self.t_mul).is_integer():
            exact = ops.power(ops.cast(int(self.t_mul), "int64"), ops.cast(cycle, "int64"))
            return ops.cast(exact, "float32")
        return ops.power(self.t_mul, cycle)

    def _cycle_start(self, cycle):
        if self.t_mul == 1.0:
            return cycle * self.first_decay_steps
        return self.first_decay_steps * (self._growth(cycle) - 1.0) / (self.t_mul - 1.0)

    def _cycle(self, t):
        """The cycle index of ``t``; the float estimate is corrected at the boundaries."""
        first = float(self.first_decay_steps)
        if self.t_mul == 1.0:
            return floor_div(t, first)  # exact at restarts on XLA too
        ratio = 1.0 + t * (self.t_mul - 1.0) / first
        cycle = ops.maximum(ops.floor(ops.log(ratio) / math.log(self.t_mul)), 0.0)
        # log() in float32 may land just below an integer at an exact restart
        # (or just above one a step before it); move to the cycle holding ``t``.
        cycle = ops.where(t < self._cycle_start(cycle), ops.maximum(cycle - 1.0, 0.0), cycle)
        cycle = ops.where(t >= self._cycle_start(cycle + 1.0), cycle + 1.0, cycle)
        return cycle

    def __call__(self, step):
        t = ops.maximum(as_float(step), 0.0)
        cycle = self._cycle(t)
        start = self._cycle_start(cycle)
        length = self.first_decay_steps * self._growth(cycle)
        done, left = progress(t, start, start + length)
        # m_mul ** cycle as exp(cycle * log(m_mul)) with the log taken in float64.
        peak = self.initial_learning_rate * ops.exp(cycle * math.log(self.m_mul))
        return cosine_mix(peak, self.alpha * peak, done, left)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self.t_mul,
            "m_mul": self.m_mul,
            "alpha": self.alpha,
        }


__all__ = ["CosineAnnealing", "CosineAnnealingWarmRestarts"]
