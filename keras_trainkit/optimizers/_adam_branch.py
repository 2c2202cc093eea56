"""The AdamW branch that MARS and Muon use for the variables they leave out.

Both take an ``adam_learning_rate`` and an ``adam_weight_decay`` that are
either ``None`` (follow the main ``learning_rate`` / ``weight_decay``), a float,
or a ``LearningRateSchedule`` of the update count ``optimizer.iterations``;
:class:`AdamBranchMixin` gives their current values.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_trainkit.optimizers._base import check_weight_decay, state_dtype
from keras_trainkit.utils import validation

_Schedule = keras.optimizers.schedules.LearningRateSchedule


def check_adam_learning_rate(value):
    """``None``, a float >= 0 or a ``LearningRateSchedule``."""
    if value is None or isinstance(value, _Schedule):
        return value
    return float(validation.check_non_negative("adam_learning_rate", value))


def check_adam_weight_decay(value):
    """``None``, a float >= 0 or a ``LearningRateSchedule``."""
    return check_weight_decay(value)


def current_value(optimizer, value, default):
    """``default`` for ``None``, the schedule at ``optimizer.iterations``, or the float."""
    if value is None:
        return default
    if isinstance(value, _Schedule):
        return value(optimizer.iterations)
    return value


class AdamBranchMixin:
    """For a ``TrainkitOptimizer`` with ``adam_learning_rate`` and ``adam_weight_decay`` attributes."""

    def _adam_learning_rate(self, learning_rate):
        """The AdamW branch's learning rate now (``learning_rate`` when ``adam_learning_rate`` is ``None``)."""
        return current_value(self, self.adam_learning_rate, learning_rate)

    def _adam_decay_rate(self, variable):
        """The AdamW branch's decay for ``variable`` in its dtype, or ``None`` when not decayed.

        ``adam_weight_decay=None`` falls back to the main ``weight_decay``; the
        ``exclude_from_weight_decay`` patterns apply either way.
        """
        if self.adam_weight_decay is None:
            return self._decay_rate(variable)
        if not self._use_weight_decay(variable):
            return None
        return ops.cast(current_value(self, self.adam_weight_decay, None), state_dtype(variable.dtype))

