"""Shared pieces of the schedules: step casting, nested-schedule handling, shapes.

Every schedule here is a pure function of ``step``, the number of optimizer
updates already applied (Keras passes ``optimizer.iterations``). The math is
written with ``keras.ops`` and element-wise ``where`` selections instead of
``cond``, so a schedule also accepts a vector of steps and compiles under XLA.
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops

from keras_trainkit.utils import validation

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule

#: The counting sentence every schedule's docstring carries.
COUNTING_NOTE = (
    "``step`` counts optimizer updates (Keras passes ``optimizer.iterations``): "
    "with gradient accumulation one step is one applied update, not one "
    "micro-batch, and epochs are never counted (convert with "
    ":func:`keras_trainkit.schedules.epochs_to_steps`)."
)


def as_float(step):
    """Cast a step (Python number, array, tensor or variable) to ``float32``."""
    return ops.cast(step, "float32")


def floor_div(t, d: float):
    """``floor(t / d)`` for a ``float32`` step ``t >= 0`` and a step count ``d > 0``, exact
    for steps below 2**24 on every backend and under XLA.

    ``ops.floor_divide`` alone is not: XLA divides through a reciprocal, so on
    TensorFlow with ``jit_compile=True`` ``floor_divide(41.0, 41.0)`` is 0 (40 of the
    step counts 1-299 go wrong that way), and ``floor(t / d)`` fails the same way on
    JAX. The estimate is moved by one where ``q * d`` (exact in ``float32``) shows it
    off.
    """
    q = ops.floor_divide(t, d)
    q = ops.where(q * d > t, q - 1.0, q)
    return ops.where((q + 1.0) * d <= t, q + 1.0, q)


def progress(t, begin, end):
    """``(done, left)``: the fractions of ``[begin, end]`` behind and ahead of ``t``.

    Both are computed from a difference of step counts (exact in ``float32``
    for steps below 2**24) and one division, so each is accurate to a relative
    rounding error even where it is tiny; ``1 - done`` would not be near the end.
    Where ``begin + span`` rounds to ``begin`` (a short span at a float32 step far past
    2**24: SGDR's 5-step cycles at step 2**27) the span is 0, and ``t`` is read as at
    ``begin`` (``(0, 1)``) instead of ``0 / 0``, a NaN learning rate.
    """
    span = end - begin
    empty = ops.equal(span, 0.0)
    safe_span = ops.where(empty, 1.0, span)
    return ops.where(empty, 0.0, (t - begin) / safe_span), ops.where(empty, 1.0, (end - t) / safe_span)


def linear_mix(start, end, done, left):
    """Linear interpolation ``start * left + end * done`` (``done + left = 1``).

    For non-negative ``start``/``end`` both terms are non-negative, so the result
    keeps full relative precision even when it is close to 0.
    """
    return start * left + end * done


def cosine_mix(start, end, done, left):
    """Half-cosine interpolation from ``start`` (``done = 0``) to ``end`` (``done = 1``).

    Equals ``end + (start - end) * (1 + cos(pi * done)) / 2``, written as
    ``start * sin(pi/2 * left)**2 + end * sin(pi/2 * done)**2`` so that no
    cancellation happens near either end of the interval.
    """
    return start * ops.square(ops.sin(0.5 * math.pi * left)) + end * ops.square(
        ops.sin(0.5 * math.pi * done)
    )


def check_steps(name: str, value, *, allow_zero: bool = False) -> int:
    """Validate a step count (an integer, > 0 or >= 0) and return it as ``int``."""
    if allow_zero:
        validation.check_non_negative(name, value, integer=True)
    else:
        validation.check_positive(name, value, integer=True)
    return int(value)


def check_rate(name: str, value, *, allow_zero: bool = False) -> float:
    """Validate a learning rate (a finite real, > 0 or >= 0) and return it as ``float``."""
    if allow_zero:
        validation.check_non_negative(name, value)
    else:
        validation.check_positive(name, value)
    return float(value)


def resolve_schedule(name: str, value):
    """Accept a ``LearningRateSchedule``, a non-negative number or a serialized schedule.

    A config dict (as written by ``keras.saving.serialize_keras_object``) is
    deserialized; a number is returned as ``float``. Plain callables are refused
    because they cannot be saved with the model.
    """
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if isinstance(value, LearningRateSchedule):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a keras.optimizers.schedules.LearningRateSchedule "
            f"or a non-negative number, not {type(value).__name__}. Received: {name}={value!r}"
        )
    return check_rate(name, value, allow_zero=True)


def serialize_schedule(value):
    """The config form of a nested schedule (a float stays a float)."""
    if isinstance(value, LearningRateSchedule):
        return keras.saving.serialize_keras_object(value)
    return value


def evaluate(schedule, step):
    """The value of a nested schedule (or constant) at ``step`` as ``float32``."""
    if isinstance(schedule, LearningRateSchedule):
        return ops.cast(schedule(step), "float32")
    return ops.zeros_like(as_float(step)) + schedule


class AnnealToFloor(LearningRateSchedule):
    """Base of the schedules that go from ``initial_learning_rate`` at step 0 to
    the floor ``alpha * initial_learning_rate`` at ``decay_steps`` and stay there.

    A subclass gives the shape as ``mix(start, end, done, left)``
    (``linear_mix``, ``cosine_mix``) and its own docstring with the formula.
    """

    mix = None

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0):
        self.initial_learning_rate = check_rate("initial_learning_rate", initial_learning_rate)
        self.decay_steps = check_steps("decay_steps", decay_steps)
        validation.check_number("alpha", alpha, minimum=0.0, maximum=1.0)
        self.alpha = float(alpha)

    def __call__(self, step):
        decay_steps = float(self.decay_steps)
        done, left = progress(ops.minimum(as_float(step), decay_steps), 0.0, decay_steps)
        peak = self.initial_learning_rate
        return type(self).mix(peak, self.alpha * peak, done, left)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
        }
