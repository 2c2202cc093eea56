"""Monotone decays: step (staircase) decay, linear (budgeted) decay, inverse square root."""

from __future__ import annotations

from keras import ops

from keras_trainkit.schedules._common import (
    AnnealToFloor,
    LearningRateSchedule,
    as_float,
    check_rate,
    check_steps,
    floor_div,
    linear_mix,
    progress,
)
from keras_trainkit.schedules._registry import register
from keras_trainkit.utils import validation


def epochs_to_steps(epochs, steps_per_epoch) -> int:
    """Convert a number of epochs to a number of optimizer updates.

    Schedules count optimizer updates, never epochs; use this to express an
    epoch-based recipe ("divide by 10 every 30 epochs") in steps. With gradient
    accumulation over ``k`` micro-batches, pass ``steps_per_epoch`` as the number
    of *updates* per epoch (micro-batches per epoch divided by ``k``).

    Args:
        epochs: a non-negative number of epochs (may be fractional, e.g. 0.5).
        steps_per_epoch: a positive integer, the optimizer updates per epoch.

    Returns:
        ``round(epochs * steps_per_epoch)`` as an ``int``.

    Example:
        >>> epochs_to_steps(30, steps_per_epoch=390)
        11700
    """
    validation.check_non_negative("epochs", epochs)
    check_steps("steps_per_epoch", steps_per_epoch)
    return int(round(float(epochs) * int(steps_per_epoch)))


@register(aliases=("step", "staircase_decay"))
class StepDecay(LearningRateSchedule):
    """Step (staircase) decay: multiply the learning rate by ``gamma`` every ``step_size`` steps.

    Formula::

        lr(t) = initial_learning_rate * gamma ** floor(t / step_size)

    This is ``torch.optim.lr_scheduler.StepLR``. ``t`` counts optimizer updates
    (Keras passes ``optimizer.iterations``): with gradient accumulation one step
    is one applied update, not one micro-batch, and epochs are never counted; use
    :meth:`from_epochs` or :func:`epochs_to_steps` for an epoch-based recipe.

    Args:
        initial_learning_rate: the learning rate before the first drop, > 0.
        step_size: updates between drops, a positive integer (``d``).
        gamma: the factor applied at each drop, in ``(0, 1]`` (default 0.1).

    Example:
        >>> schedule = StepDecay(0.1, step_size=100, gamma=0.5)
        >>> [round(float(schedule(t)), 4) for t in (0, 99, 100, 250)]
        [0.1, 0.1, 0.05, 0.025]

    Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(self, initial_learning_rate, step_size, gamma=0.1):
        self.initial_learning_rate = check_rate("initial_learning_rate", initial_learning_rate)
        self.step_size = check_steps("step_size", step_size)
        validation.check_number("gamma", gamma, minimum=0.0, maximum=1.0, min_inclusive=False)
        self.gamma = float(gamma)

    @classmethod
    def from_epochs(cls, initial_learning_rate, epochs_per_drop, steps_per_epoch, gamma=0.1):
        """Build a ``StepDecay`` that drops every ``epochs_per_drop`` epochs.

        Args:
            initial_learning_rate: the learning rate before the first drop.
            epochs_per_drop: epochs between drops (``d`` in the course notes).
            steps_per_epoch: optimizer updates per epoch.
            gamma: the factor applied at each drop.

        Example:
            >>> StepDecay.from_epochs(0.1, epochs_per_drop=30, steps_per_epoch=100).step_size
            3000
        """
        step_size = epochs_to_steps(epochs_per_drop, steps_per_epoch)
        return cls(initial_learning_rate, step_size=step_size, gamma=gamma)

    def __call__(self, step):
        # not floor(t / d): XLA divides through a reciprocal, so 97.0 / 97.0 gives
        # 0.99999994 and the drop would come one step late (see floor_div).
        drops = floor_div(as_float(step), float(self.step_size))
        return self.initial_learning_rate * ops.power(self.gamma, drops)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "step_size": self.step_size,
            "gamma": self.gamma,
        }


@register(aliases=("linear", "budgeted_linear"))
class LinearDecay(AnnealToFloor):
    """Linear decay to a floor over a fixed budget of steps (budgeted training).

    Formula (``T = decay_steps``; constant at the floor after ``T``)::

        lr(t) = initial_learning_rate * (1 - (1 - alpha) * min(t, T) / T)

    With ``alpha = 0`` this is the course notes' ``eta_t = eta_0 (1 - t / T)``,
    the schedule Li et al. recommend when the training budget is known. It is
    ``torch.optim.lr_scheduler.LinearLR(start_factor=1, end_factor=alpha,
    total_iters=T)``. ``t`` counts optimizer updates (Keras passes
    ``optimizer.iterations``): with gradient accumulation one step is one applied
    update, not one micro-batch, and epochs are never counted.

    Args:
        initial_learning_rate: the learning rate at step 0, > 0.
        decay_steps: the budget ``T`` in updates, a positive integer.
        alpha: the floor as a fraction of ``initial_learning_rate``, in ``[0, 1]``.

    Example:
        >>> schedule = LinearDecay(0.1, decay_steps=100)
        >>> [round(float(schedule(t)), 4) for t in (0, 50, 100, 200)]
        [0.1, 0.05, 0.0, 0.0]

    Reference: Li, Yumer, Ramanan, "Budgeted Training: Rethinking Deep Neural
    Network Training under Resource Constraints", ICLR 2020.
    """

    mix = staticmethod(linear_mix)


@register(aliases=("inverse_sqrt", "rsqrt", "noam"))
class InverseSqrtDecay(LearningRateSchedule):
    """Linear warm-up, then decay proportional to the inverse square root of the step.

    Formula (``W = warmup_steps``, ``s = start_learning_rate``,
    ``p = learning_rate``)::

        lr(t) = s + (p - s) * t / W     for t < W
        lr(t) = p * sqrt(W / t)         for t >= W

    so the learning rate peaks at ``p`` at step ``W`` and then falls like
    ``1 / sqrt(t)`` (fairseq's ``inverse_sqrt``; the Transformer's "Noam"
    schedule with its peak named directly). ``t`` counts optimizer updates
    (Keras passes ``optimizer.iterations``): with gradient accumulation one step
    is one applied update, not one micro-batch, and epochs are never counted.

    Args:
        learning_rate: the peak ``p``, reached at step ``warmup_steps``; > 0.
        warmup_steps: the warm-up length ``W`` in updates, a positive integer.
        start_learning_rate: ``s``, the value at step 0, in ``[0, learning_rate]``.

    Example:
        >>> schedule = InverseSqrtDecay(1e-3, warmup_steps=100)
        >>> [round(float(schedule(t)), 6) for t in (0, 50, 100, 400)]
        [0.0, 0.0005, 0.001, 0.0005]

    Reference: Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    def __init__(self, learning_rate, warmup_steps, start_learning_rate=0.0):
        self.learning_rate = check_rate("learning_rate", learning_rate)
        self.warmup_steps = check_steps("warmup_steps", warmup_steps)
        check_rate("start_learning_rate", start_learning_rate, allow_zero=True)
        validation.check_condition(
            "start_learning_rate",
            start_learning_rate,
            start_learning_rate <= learning_rate,
            f"must be <= `learning_rate` ({learning_rate})",
        )
        self.start_learning_rate = float(start_learning_rate)

    def __call__(self, step):
        t = as_float(step)
        warmup_steps = float(self.warmup_steps)
        warm = linear_mix(
            self.start_learning_rate, self.learning_rate, *progress(t, 0.0, warmup_steps)
        )
        decay = self.learning_rate * ops.sqrt(warmup_steps / ops.maximum(t, warmup_steps))
        return ops.where(t < warmup_steps, warm, decay)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "start_learning_rate": self.start_learning_rate,
        }


__all__ = ["epochs_to_steps", "StepDecay", "LinearDecay", "InverseSqrtDecay"]
