"""The one-cycle policy (Smith 2018), step for step like torch's ``OneCycleLR``."""

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


@register(aliases=("one_cycle_lr", "1cycle"))
class OneCycle(LearningRateSchedule):
    """One-cycle learning rate: warm up to ``max_learning_rate``, then anneal far below the start.

    With ``T = total_steps``, ``p = pct_start``, ``initial = max_learning_rate /
    div_factor`` and ``minimum = initial / final_div_factor``, the phases end at
    steps (as in torch, ``end`` is inclusive and may be fractional)::

        two phases:   [0, p*T - 1]: initial -> max      [.., T - 1]: max -> minimum
        three phases: [0, p*T - 1]: initial -> max      [.., 2*p*T - 2]: max -> initial
                      [.., T - 1]: initial -> minimum

    Inside a phase from step ``a`` to ``b`` going from ``start`` to ``end``, with
    ``q = (t - a) / (b - a)``::

        cos:    lr(t) = end + (start - end) * (1 + cos(pi * q)) / 2
        linear: lr(t) = start + (end - start) * q

    This is ``torch.optim.lr_scheduler.OneCycleLR`` with the same argument names
    (``max_lr`` is ``max_learning_rate``). Steps past ``T - 1`` keep the final
    value (torch raises instead). Momentum cycling is not part of a learning-rate
    schedule: use ``keras_trainkit.callbacks.HyperparameterScheduler`` for it.
    ``t`` counts optimizer updates (Keras passes ``optimizer.iterations``): with
    gradient accumulation one step is one applied update, not one micro-batch,
    and epochs are never counted (``total_steps = epochs * updates_per_epoch``).

    Args:
        max_learning_rate: the peak learning rate, > 0.
        total_steps: ``T``, the number of updates in the cycle, a positive integer.
        pct_start: the fraction of the cycle spent increasing, in ``(0, 1)``.
        anneal_strategy: ``"cos"`` or ``"linear"``.
        div_factor: ``initial = max_learning_rate / div_factor``, > 0.
        final_div_factor: ``minimum = initial / final_div_factor``, > 0.
        three_phase: if true, anneal back to ``initial`` symmetrically before the
            final annihilation phase (fastai's and the paper's shape).

    Example:
        >>> schedule = OneCycle(0.1, total_steps=100, pct_start=0.25)
        >>> [float(f"{float(schedule(t)):.3g}") for t in (0, 24, 99)]
        [0.004, 0.1, 4e-07]

    Reference: Smith, "A disciplined approach to neural network hyper-parameters:
    Part 1", arXiv:1803.09820, 2018; Smith & Topin, "Super-Convergence", 2019.
    """

    def __init__(
        self,
        max_learning_rate,
        total_steps,
        pct_start=0.3,
        anneal_strategy="cos",
        div_factor=25.0,
        final_div_factor=1e4,
        three_phase=False,
    ):
        self.max_learning_rate = check_rate("max_learning_rate", max_learning_rate)
        self.total_steps = check_steps("total_steps", total_steps)
        validation.check_number(
            "pct_start", pct_start, minimum=0.0, maximum=1.0, min_inclusive=False, max_inclusive=False
        )
        self.pct_start = float(pct_start)
        self.anneal_strategy = validation.check_in("anneal_strategy", anneal_strategy, ("cos", "linear"))
        self.div_factor = check_rate("div_factor", div_factor)
        self.final_div_factor = check_rate("final_div_factor", final_div_factor)
        self.three_phase = validation.check_type("three_phase", three_phase, bool)

        warm_end = self.pct_start * self.total_steps - 1.0
        validation.check_condition(
            "pct_start",
            pct_start,
            warm_end > 0.0,
            f"must make the warm-up phase end after step 0, i.e. pct_start * total_steps > 1 "
            f"(total_steps={self.total_steps})",
        )
        initial = self.max_learning_rate / self.div_factor
        minimum = initial / self.final_div_factor
        if self.three_phase:
            validation.check_condition(
                "pct_start",
                pct_start,
                2.0 * self.pct_start * self.total_steps - 2.0 < self.total_steps - 1.0,
                "must satisfy 2 * pct_start * total_steps < total_steps + 1 with three_phase=True "
                f"(total_steps={self.total_steps})",
            )
            self._phases = (
                (warm_end, initial, self.max_learning_rate),
                (2.0 * self.pct_start * self.total_steps - 2.0, self.max_learning_rate, initial),
                (self.total_steps - 1.0, initial, minimum),
            )
        else:
            self._phases = (
                (warm_end, initial, self.max_learning_rate),
                (self.total_steps - 1.0, self.max_learning_rate, minimum),
            )

    def _anneal(self, start, end, done, left):
        mix = cosine_mix if self.anneal_strategy == "cos" else linear_mix
        return mix(start, end, done, left)

    def __call__(self, step):
        t = ops.clip(as_float(step), 0.0, float(self.total_steps - 1))
        values = []
        begin = 0.0
        for end_step, start_lr, end_lr in self._phases:
            values.append(self._anneal(start_lr, end_lr, *progress(t, begin, end_step)))
            begin = end_step
        # The first phase whose (inclusive) end is not before ``t``; the last otherwise.
        value = values[-1]
        for (end_step, _, _), phase_value in zip(self._phases[-2::-1], values[-2::-1]):
            value = ops.where(t <= end_step, phase_value, value)
        return value

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "anneal_strategy": self.anneal_strategy,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "three_phase": self.three_phase,
        }


__all__ = ["OneCycle"]
