"""``ScaledSchedule``: a schedule multiplied by a scale held in a variable.

``keras_trainkit.callbacks.ReduceLROnPlateau`` wraps an optimizer's schedule in
one and lowers the scale on a plateau, so the schedule keeps its shape.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_trainkit.schedules._registry import register
from keras_trainkit.utils.validation import check_non_negative

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


@register
class ScaledSchedule(LearningRateSchedule):
    """A learning-rate schedule multiplied by a scale factor stored in a variable.

    Formula: ``lr(step) = scale * schedule(step)``, where ``scale`` lives in
    :attr:`scale_variable` (a non-trainable scalar ``keras.Variable``), so
    changing it with :meth:`set_scale` takes effect inside an already traced or
    XLA-compiled train step while ``schedule`` keeps its shape. ``step`` is
    whatever the optimizer passes, unchanged: it counts optimizer updates where
    the optimizer does (see ``keras_trainkit.optimizers.UpdateCountScheduleMixin``).

    The variable is not an optimizer variable (adding one would change the
    layout of saved optimizer states); the current scale is written into
    :meth:`get_config`, so ``model.save``/``load_model`` keep it, and the
    Trainer's and tuning trials' checkpoints save it beside the variables
    (``optimizers.control.learning_rate_scales``).

    Args:
        schedule: the wrapped ``LearningRateSchedule`` (or its config dict), or
            a zero-argument callable (as Keras accepts for ``learning_rate``).
        scale: the initial scale, a float >= 0.

    Example:
        >>> import keras
        >>> from keras_trainkit.schedules import ScaledSchedule
        >>> base = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
        >>> scaled = ScaledSchedule(base, scale=0.5)
        >>> round(float(scaled(10)), 6)
        0.025

    No paper: the plateau reduction it serves is Keras's ``ReduceLROnPlateau``.
    """

    def __init__(self, schedule, scale=1.0):
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        if not callable(schedule):
            raise TypeError(
                "Argument `schedule` must be a LearningRateSchedule or a callable, not "
                f"{type(schedule).__name__}. Received: schedule={schedule!r}"
            )
        check_non_negative("scale", scale)
        self.schedule = schedule
        self.scale_variable = keras.Variable(
            float(scale), dtype="float32", trainable=False, name="learning_rate_scale"
        )

    @property
    def scale(self) -> float:
        """The current scale as a Python float."""
        return float(ops.convert_to_numpy(self.scale_variable))

    def set_scale(self, value) -> None:
        """Set the scale (a float >= 0); a traced step sees it at its next run."""
        check_non_negative("scale", value)
        self.scale_variable.assign(float(value))

    def base_value(self, step):
        """The wrapped schedule's value at ``step``, without the scale."""
        if isinstance(self.schedule, LearningRateSchedule):
            return self.schedule(step)
        return self.schedule()

    def __call__(self, step):
        base = ops.convert_to_tensor(self.base_value(step))
        dtype = keras.backend.standardize_dtype(base.dtype)
        if "float" not in dtype:  # an integer rate: the scale (0.5) must not be truncated to 0
            dtype = "float32"
            base = ops.cast(base, dtype)
        return ops.multiply(ops.cast(self.scale_variable, dtype), base)

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "scale": self.scale,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
