"""``LearningRateHandle``: read, scale, set or temporarily override a learning rate."""

from __future__ import annotations

import contextlib

import keras

from keras_trainkit._compat.keras import raw_learning_rate, replace_raw_learning_rate
from keras_trainkit.optimizers.control.chain_walk import (
    _children,
    assigned_outside_state,
    model_leaf_optimizers,
    retrace,
)
from keras_trainkit.utils.validation import check_number
from keras_trainkit.utils.values import to_float
from keras_trainkit.schedules.scaled import ScaledSchedule


@keras.saving.register_keras_serializable(package="keras_trainkit")
class HeldLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate held at a variable's value in place of ``schedule``, saved as ``schedule``.

    What :meth:`LearningRateHandle.begin_override` puts in place of a schedule:
    ``lr(step) = variable`` (assign it to change the rate inside a traced step).
    Its config is the schedule's, and loading it gives the schedule back, so a
    model saved while the rate is held (a ``ModelCheckpoint`` during SWA's
    annealing) keeps its optimizer's config and variable layout: loading it
    restores the optimizer's state (a ``keras.Variable`` in the schedule's
    place would be saved as a float learning rate, one optimizer variable
    more, and Keras would then skip loading the saved slots).

    Args:
        schedule: the schedule (or callable) that the held rate stands in for.
        value: the rate to hold (a finite number >= 0).
    """

    def __init__(self, schedule, value):
        if not callable(schedule):
            raise TypeError("Argument `schedule` must be a LearningRateSchedule or a callable of "
                            f"the step. Received: schedule={schedule!r}")
        number = to_float(value) if hasattr(value, "shape") else None  # a one-number array or tensor
        check_number("value", value if number is None else number, minimum=0)
        self.schedule = schedule
        self.variable = keras.Variable(float(value), dtype="float32", trainable=False,
                                       name="learning_rate_override")

    def __call__(self, step):
        return keras.ops.convert_to_tensor(self.variable)

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule)}

    @classmethod
    def from_config(cls, config):
        """The schedule the rate was held in place of (the hold is not saved)."""
        return keras.saving.deserialize_keras_object(config["schedule"])


class LearningRateHandle:
    """Read, scale, set or temporarily override one (leaf) optimizer's learning rate.

    A float learning rate lives in a ``keras.Variable`` (assigning it reaches
    a compiled step); a ``LearningRateSchedule`` is a function of the step, so
    it is scaled by wrapping it once in a :class:`ScaledSchedule` whose scale
    is a variable (:meth:`make_scalable`; retrace afterwards).

    Args:
        optimizer: a leaf optimizer (see :func:`leaf_optimizers`).

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers.control import LearningRateHandle
        >>> handle = LearningRateHandle(keras.optimizers.SGD(0.1))
        >>> handle.scale(0.5)
        0.05
    """

    def __init__(self, optimizer):
        if _children(optimizer) is not None or not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "LearningRateHandle needs a leaf optimizer (see leaf_optimizers). "
                f"Received: optimizer={optimizer!r}"
            )
        self.optimizer = optimizer
        self._saved = None

    @property
    def raw(self):
        """The learning rate as stored: a variable, a schedule or a callable."""
        return raw_learning_rate(self.optimizer)

    @property
    def is_schedule(self) -> bool:
        """Whether the learning rate is a function of the step (schedule or callable, not held)."""
        return self.variable is None

    @property
    def variable(self):
        """The variable a traced step reads the rate from: a float's or a held one's (``None`` for a schedule)."""
        raw = self.raw
        if isinstance(raw, HeldLearningRate):
            return raw.variable
        return raw if isinstance(raw, keras.Variable) else None

    @property
    def held(self) -> bool:
        """Whether a schedule is replaced by a held rate now (:meth:`begin_override`)."""
        return isinstance(self.raw, HeldLearningRate)

    def _assign(self, value) -> None:
        """Set a float (or held) learning rate to ``value``."""
        self.variable.assign(float(value))

    def value(self) -> float:
        """The learning rate the next update will use (schedules evaluated at the update count)."""
        return to_float(self.optimizer.learning_rate)

    def make_scalable(self) -> bool:
        """Wrap a schedule in a ``ScaledSchedule`` (once); returns whether anything changed."""
        raw = self.raw
        if self.variable is not None or isinstance(raw, ScaledSchedule):
            return False
        if not callable(raw):
            raise ValueError(
                f"{type(self.optimizer).__name__} has a learning rate of type {type(raw).__name__}, "
                f"which cannot be scaled. Received: learning_rate={raw!r}"
            )
        self.optimizer.learning_rate = ScaledSchedule(raw)
        return True

    def scale(self, factor, minimum=0.0) -> float:
        """Multiply the learning rate by ``factor`` (not below ``minimum``); returns the new value.

        A schedule must have been made scalable first (:meth:`make_scalable`);
        its scale is lowered so the scheduled value is ``max(value * factor,
        minimum)`` now and keeps the schedule's shape afterwards.
        """
        current = self.value()
        raw = self.raw
        if isinstance(raw, ScaledSchedule):
            base = current / raw.scale if raw.scale > 0 else 0.0
            new_scale = raw.scale * factor
            if base > 0:
                new_scale = max(new_scale, minimum / base)
            raw.set_scale(min(new_scale, raw.scale))
            return base * raw.scale
        if self.is_schedule:
            raise ValueError(
                f"{type(self.optimizer).__name__}'s learning-rate schedule must be made scalable "
                "first (LearningRateHandle.make_scalable, then retrace). "
                f"Received: learning_rate={raw!r}"
            )
        new = max(current * factor, minimum)
        self._assign(new)
        return new

    def set(self, value) -> None:
        """Set a float learning rate (a schedule's is refused: override or scale it instead)."""
        if self.is_schedule:
            raise ValueError(
                f"{type(self.optimizer).__name__} uses a learning-rate schedule "
                f"({type(self.raw).__name__}), which cannot be set to a float; use "
                f"LearningRateHandle.override for a while. Received: learning_rate={value!r}"
            )
        self._assign(value)

    def begin_override(self, value) -> bool:
        """Hold the learning rate at ``value`` until :meth:`end_override`; returns whether to retrace.

        A float learning rate is assigned (its variable is the one a traced
        step reads: no retrace), and so is one held already. A schedule is
        replaced by a :class:`HeldLearningRate` holding ``value`` (returns
        ``True``: a step traced before reads the schedule, so retrace with
        :func:`retrace`), which is saved as the schedule. Either way the
        optimizer's saved config and layout are unchanged and
        :meth:`end_override` puts the original back. Call again to change the
        value; :attr:`override_variable` is the variable to assign directly.
        """
        if self._saved is not None:
            self.override_variable.assign(float(value))
            return False
        variable = self.variable
        if variable is not None:
            self._saved = ("value", to_float(variable))
            variable.assign(float(value))
            return False
        raw = self.raw
        self._saved = ("object", raw)
        replace_raw_learning_rate(self.optimizer, HeldLearningRate(raw, value))
        return True

    @property
    def override_variable(self):
        """The variable holding the overriding learning rate (``None`` without an override)."""
        return self.variable if self._saved is not None else None

    def end_override(self) -> bool:
        """Put back what :meth:`begin_override` changed; returns whether to retrace."""
        if self._saved is None:
            return False
        kind, saved = self._saved
        if kind == "value":
            self.override_variable.assign(saved)
            self._saved = None
            return False
        self._saved = None
        replace_raw_learning_rate(self.optimizer, saved)
        return True

    @contextlib.contextmanager
    def override(self, value):
        """``with handle.override(value) as variable:``: a temporary learning rate.

        For a loop traced inside the block (the LR finder's); a step traced
        before it would not see a replaced schedule.
        """
        self.begin_override(value)
        try:
            yield self.override_variable
        finally:
            self.end_override()


def learning_rate_handles(model) -> list[LearningRateHandle]:
    """A :class:`LearningRateHandle` for each leaf optimizer of ``model.optimizer``."""
    leaves = model_leaf_optimizers(model)
    if not leaves:
        raise ValueError(
            "A compiled model with an optimizer is needed. "
            f"Received: model.optimizer={getattr(model, 'optimizer', None)!r}"
        )
    return [LearningRateHandle(leaf) for leaf in leaves]


def _scaled_schedule(raw):
    """The ``ScaledSchedule`` a learning rate is (or holds under a :class:`HeldLearningRate`), else ``None``."""
    if isinstance(raw, HeldLearningRate):
        raw = raw.schedule
    return raw if isinstance(raw, ScaledSchedule) else None


def learning_rate_scales(model) -> list:
    """For each leaf optimizer of ``model``, the scale of its ``ScaledSchedule`` learning rate, or ``None``.

    ``ReduceLROnPlateau``'s reductions of a schedule live in that scale, which is
    kept outside the optimizer's variables (``ScaledSchedule`` says why). A
    checkpoint that saves the variables saves this list beside them and puts it
    back with :func:`restore_learning_rate_scales`; without it a resumed run
    would train at the schedule's unreduced rate.
    """
    scales = []
    for leaf in model_leaf_optimizers(model):
        scaled = _scaled_schedule(raw_learning_rate(leaf))
        scales.append(None if scaled is None else scaled.scale)
    return scales


def restore_learning_rate_scales(model, scales) -> None:
    """Put back the :func:`learning_rate_scales` a checkpoint saved (``None``: it saved none).

    A schedule is wrapped in a ``ScaledSchedule`` where the saved list has a
    scale (then :func:`retrace`); a ``ScaledSchedule`` where it has ``None``
    goes back to scale 1.

    Raises:
        ValueError: ``scales`` does not fit ``model``'s optimizers (another
            count, a scale where the learning rate is a float, a value that is
            not a number >= 0).
    """
    if scales is None:
        return
    handles = learning_rate_handles(model)
    if not isinstance(scales, list) or len(scales) != len(handles) or not all(
            scale is None or (isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale >= 0)
            for scale in scales):
        raise ValueError(f"Argument `scales` must hold a scale >= 0 or None for each of the model's "
                         f"{len(handles)} optimizer(s). Received: scales={scales!r}")
    for handle, scale in zip(handles, scales):  # all checked before anything changes
        if scale is not None and not handle.is_schedule and _scaled_schedule(handle.raw) is None:
            raise ValueError(f"{handle.optimizer.name}'s learning rate is a float, which has no "
                             f"schedule scale to restore. Received: scales={scales!r}")
    wrapped = False
    for handle, scale in zip(handles, scales):
        if scale is not None:
            wrapped = handle.make_scalable() or wrapped
        scaled = _scaled_schedule(handle.raw)
        if scaled is not None:
            scaled.set_scale(1.0 if scale is None else scale)
    if wrapped:
        retrace(model)  # a step traced before reads the bare schedule
    else:
        assigned_outside_state(model)
