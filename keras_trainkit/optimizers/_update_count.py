"""Make learning-rate schedules count optimizer updates under gradient accumulation.

What Keras 3.15 does (``keras/src/optimizers/base_optimizer.py``): with
``gradient_accumulation_steps=k`` the counter ``optimizer._iterations`` grows
by one per *micro-batch*; the public ``optimizer.iterations`` property returns
``_iterations // k`` (applied updates, used by Adam's bias correction and EMA),
but ``_get_current_learning_rate`` calls ``schedule(self._iterations)``. The
update that ends accumulation window ``u`` (0-based) therefore runs with
``schedule(k * u + k - 1)`` instead of ``schedule(u)``: the schedule runs ``k``
times too fast and is off by ``k - 1`` steps. Decoupled weight decay
(``_apply_weight_decay``) multiplies by the same learning rate.

The fix is one method: evaluate a ``LearningRateSchedule`` at
``optimizer.iterations``. At the update step ``_iterations = k * u + k - 1``,
so ``iterations = u``, the number of updates applied before this one, which is
exactly what a schedule means by ``step``. Without accumulation nothing
changes (``iterations is _iterations``).
"""

from __future__ import annotations

import keras

from keras_trainkit._compat.keras import micro_batch_learning_rate, raw_learning_rate

_Schedule = keras.optimizers.schedules.LearningRateSchedule


def update_count_learning_rate(optimizer):
    """The learning rate ``optimizer`` should use now, with schedules at the update count.

    ``schedule(optimizer.iterations)`` for a ``LearningRateSchedule`` (the
    update count, not the micro-batch count); otherwise whatever Keras returns
    (a variable, or a zero-argument callable's value).
    """
    learning_rate = raw_learning_rate(optimizer)
    if optimizer.gradient_accumulation_steps and isinstance(learning_rate, _Schedule):
        return learning_rate(optimizer.iterations)
    return micro_batch_learning_rate(optimizer)


class UpdateCountScheduleMixin:
    """Mixin for ``keras.optimizers.Optimizer`` subclasses: schedules count updates.

    Put it before the Keras base class::

        class TrainkitOptimizer(UpdateCountScheduleMixin, keras.optimizers.Optimizer):
            ...

    With ``gradient_accumulation_steps=k`` the learning-rate schedule then
    receives the number of applied updates ``optimizer.iterations`` (as the
    schedules' docstrings promise) instead of Keras's micro-batch counter.
    """

    def _get_current_learning_rate(self):
        return update_count_learning_rate(self)
