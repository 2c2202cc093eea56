"""Cosine annealing with a floor, and its warm-restart (SGDR) form."""

from __future__ import annotations

import math

import numpy as np
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
from keras_trainkit.utils.validation import FLOAT32_MAX

#: The restarts of ``CosineAnnealingWarmRestarts`` come from a table computed in
#: float64 for at most this many cycles, up to the first restart at or beyond
#: ``2**24`` (float32 steps are exact below it); the float32 formula takes over after.
_TABLE_CYCLES = 4096
_EXACT_STEPS = 2.0**24


def _float32_at_least(value: float):
    """The smallest float32 ``>= value`` (a float64 ``>= 0``), or the nearest float32 where
    ``value`` is within float64 rounding (``1e-13`` relative) of one: an exact restart
    such as ``25.000000000000004`` for 25 stays 25. Capped at the largest float32."""
    nearest = np.float32(min(value, FLOAT32_MAX))
    close = abs(float(nearest) - value) <= 1e-13 * value
    if value >= FLOAT32_MAX or float(nearest) >= value or close:
        return nearest
    return np.nextafter(nearest, np.float32(np.inf))


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
    scales with the peak (``alpha * peak_i``, the paper's per-run ``eta_min^i``, as
    optax's ``sgdr_schedule`` with ``end_value = alpha * init_value``); Keras's
    ``CosineDecayRestarts`` differs for ``m_mul < 1``: its floor stays at
    ``alpha * initial_learning_rate``. A restart that falls on a step (``S_1 =
    T_0`` always; ``S_i`` an integer, e.g. ``t_mul=1.5``) takes effect at that
    step, eagerly and under XLA: the ``S_i`` of the first 4096 cycles below step
    ``2**24`` are tabulated in float64; later ones come from the float32 formula.
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
        self._table = self._restart_table()

    def _restart_table(self):
        """``(S, R)``: ``S_0 = 0 < S_1 < ...`` computed in float64 (exactly for an integer
        ``t_mul``), ``S`` rounded to the nearest float32 (for the phase), ``R`` up
        (:func:`_float32_at_least`), so that ``t >= R_i`` holds exactly where ``t >= S_i``
        does for a float32 ``t``: a restart that falls on a step is that step (the
        float32 formula can land an ulp past it, and the restart a step late).
        ``None`` for ``t_mul = 1``, whose restarts ``floor_div`` finds exactly."""
        if self.t_mul == 1.0:
            return None
        first, starts = self.first_decay_steps, [0.0]
        while starts[-1] < _EXACT_STEPS and len(starts) <= _TABLE_CYCLES:
            i = len(starts)
            if self.t_mul.is_integer():
                multiplier = int(self.t_mul)
                starts.append(float(first * (multiplier**i - 1) // (multiplier - 1)))
            else:
                starts.append(first * math.expm1(i * math.log(self.t_mul)) / (self.t_mul - 1.0))
        nearest = np.minimum(starts, FLOAT32_MAX).astype("float32")
        return nearest, np.array([_float32_at_least(value) for value in starts], dtype="float32")

    def _growth(self, cycle):
        """``t_mul ** cycle`` as ``exp(cycle * log(t_mul))``, the log taken in float64."""
        return ops.exp(cycle * math.log(self.t_mul))

    def _cycle_start(self, cycle):
        """``S_i = T_0 (t_mul**i - 1) / (t_mul - 1)`` in float32 (``expm1``: no cancellation)."""
        if self.t_mul == 1.0:
            return cycle * self.first_decay_steps
        scale = self.first_decay_steps / (self.t_mul - 1.0)
        return scale * ops.expm1(cycle * math.log(self.t_mul))

    def _cycle(self, t):
        """The cycle index of ``t`` by the float32 formula, corrected at the boundaries."""
        first = float(self.first_decay_steps)
        if self.t_mul == 1.0:
            return floor_div(t, first)  # exact at restarts on XLA too
        # i = floor(log(1 + t (t_mul - 1) / T_0) / log(t_mul)), through log1p.
        log_ratio = ops.log1p(t * ((self.t_mul - 1.0) / first))
        cycle = ops.maximum(ops.floor(log_ratio / math.log(self.t_mul)), 0.0)
        # log() in float32 may land just below an integer at an exact restart
        # (or just above one a step before it); move to the cycle holding ``t``.
        cycle = ops.where(t < self._cycle_start(cycle), ops.maximum(cycle - 1.0, 0.0), cycle)
        cycle = ops.where(t >= self._cycle_start(cycle + 1.0), cycle + 1.0, cycle)
        return cycle

    def _from_table(self, t, cycle, start, end):
        """``(cycle, start, end)`` from the float64 table where ``t`` lies before its last
        restart (the formula's cycle is at most one off there); the formula's after."""
        nearest, restarts = self._table
        starts, thresholds = ops.convert_to_tensor(nearest), ops.convert_to_tensor(restarts)
        last = len(nearest) - 2  # the last cycle whose end is in the table
        index = ops.clip(ops.cast(ops.clip(cycle, 0.0, float(last)), "int32"), 0, last)
        index = ops.where(t < ops.take(thresholds, index), index - 1, index)
        index = ops.where(t >= ops.take(thresholds, index + 1), index + 1, index)
        index = ops.clip(index, 0, last)
        inside = t < float(restarts[-1])
        return (
            ops.where(inside, ops.cast(index, "float32"), cycle),
            ops.where(inside, ops.take(starts, index), start),
            ops.where(inside, ops.take(starts, index + 1), end),
        )

    def __call__(self, step):
        t = ops.maximum(as_float(step), 0.0)
        cycle = self._cycle(t)
        start = self._cycle_start(cycle)
        end = start + self.first_decay_steps * self._growth(cycle)
        if self._table is not None:
            cycle, start, end = self._from_table(t, cycle, start, end)
        done, left = progress(t, start, end)
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
