"""Lookahead: k fast steps forward, one interpolation step back (Zhang et al. 2019)."""

from __future__ import annotations

import keras
from keras import ops

from keras_trainkit._compat.keras import add_slot_variables
from keras_trainkit.optimizers._conditional import run_where
from keras_trainkit.optimizers._registry import register
from keras_trainkit.optimizers.wrapper import OptimizerWrapper, check_inner_ema_off
from keras_trainkit.utils import validation as v


@register
class Lookahead(OptimizerWrapper):
    """Lookahead around any Keras optimizer.

    The wrapped ("fast") optimizer updates the model weights ``w`` as usual; a
    copy of slow weights ``phi`` (initialized to ``w`` before Lookahead's first
    update, also where the fast optimizer has taken steps before it was wrapped)
    is pulled towards them every ``sync_period`` updates, and the fast weights
    restart from the slow ones::

        w_t = inner_update(w_{t-1}, g_t)                     every step
        if t % sync_period == 0:                             t counts inner updates
            phi <- phi + slow_step_size * (w_t - phi)
            w_t <- phi

    ``t`` is the inner optimizer's update count (``iterations``), so a step the
    inner optimizer skips or accumulates (``gradient_accumulation_steps``) does
    not count. The slow weights are optimizer variables: saved by
    ``model.save``, restored by ``load_model`` and checkpointed. The model's
    weights are the fast weights; right after a synchronization they equal the
    slow weights. This matches ``optax.lookahead(fast, sync_period,
    slow_step_size)`` (which keeps the (fast, slow) pair as parameters) with the
    fast state not reset. ``use_ema`` on the fast optimizer is refused
    (``ValueError``): Keras would average the fast weights before each
    synchronization rewrites them; average with the callback
    ``keras_trainkit.callbacks.SWA``.

    Args:
        optimizer: the fast optimizer: a ``keras.optimizers.Optimizer``, a name
            or a config dict.
        sync_period: fast steps between synchronizations (``k``), an integer
            ``>= 1``. Defaults to ``6``.
        slow_step_size: interpolation factor ``alpha`` in ``(0, 1]``. Defaults to
            ``0.5``.
        name: the optimizer's name.
        **kwargs: ``loss_scale_factor``; other base-optimizer arguments belong
            on the inner optimizer.

    Example:
        >>> import keras, numpy as np
        >>> from keras_trainkit.optimizers import Lookahead
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=Lookahead(keras.optimizers.Adam(1e-3), sync_period=5), loss="mse")
        >>> _ = model.fit(np.ones((8, 4)), np.zeros((8, 1)), verbose=0)

    Reference:
        Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step
        back", NeurIPS 2019.
    """

    #: The synchronization sets the weights from the slow copy: wrappers rewriting the change
    #: of the weights refuse to wrap this one (``wrapper.check_no_weight_reset_inside``).
    resets_weights = True

    def __init__(self, optimizer, sync_period=6, slow_step_size=0.5, name=None, **kwargs):
        v.check_number("sync_period", sync_period, minimum=1, integer=True)
        v.check_number("slow_step_size", slow_step_size, minimum=0.0, maximum=1.0, min_inclusive=False)
        super().__init__(optimizer, name=name, **kwargs)
        check_inner_ema_off("Lookahead", self.inner_optimizer, "Lookahead pulls the weights to the slow ones")
        self.sync_period = int(sync_period)
        self.slow_step_size = float(slow_step_size)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._slow_weights = add_slot_variables(self, variables, "slow")
        # The inner update count at which the slow weights were last set (started or
        # synced); -1: not started. Every replica writes the same value, so no
        # cross-replica aggregation ("only_first_replica" would need a merge_call
        # inside the conds below).
        self._synced_at = self.add_variable(
            (), initializer=keras.initializers.Constant(-1), dtype="int64", aggregation="none",
            name="lookahead_synced_at"
        )

    def wrapped_apply(self, grads, variables):
        # Conditional assignments through run_where: a real cond on TensorFlow and
        # PyTorch (between syncs the slow weights cost nothing), a lax.cond on the
        # variables' values on JAX, where a cond branch cannot assign (jit,
        # stateless_apply). Every replica writes the same value.
        slots = [self._slow_weights[self._get_variable_index(w)] for w in variables]

        # At the weights seen before Lookahead's first update: not started yet, or no inner
        # update so far (as before -1 marked "not started": a state saved then reads 0).
        # "Inner iterations == 0" alone missed an inner optimizer that had stepped before it
        # was wrapped: the slow weights stayed zero, and the first sync halved the weights.
        def start_slow_weights():
            for slow, fast in zip(slots, variables):
                slow.assign(ops.cast(fast, slow.dtype))
            self._synced_at.assign(ops.cast(self.iterations, "int64"))

        not_started = ops.logical_or(ops.less(self._synced_at, 0), ops.equal(self.iterations, 0))
        run_where(not_started, start_slow_weights, slots + [self._synced_at])
        super().wrapped_apply(grads, variables)
        iteration = ops.cast(self.iterations, "int64")
        due = ops.logical_and(
            ops.equal(iteration % self.sync_period, 0),
            ops.not_equal(iteration, self._synced_at),
        )

        def sync():  # slow += alpha * (fast - slow); fast = slow
            for slow, fast in zip(slots, variables):
                slow_value = ops.convert_to_tensor(slow)
                alpha = ops.cast(self.slow_step_size, slow.dtype)
                moved = slow_value + alpha * (ops.cast(fast, slow.dtype) - slow_value)
                slow.assign(moved)
                fast.assign(ops.cast(moved, fast.dtype))
            self._synced_at.assign(iteration)

        run_where(due, sync, slots + list(variables) + [self._synced_at])

    def get_config(self):
        config = super().get_config()
        config.update({"sync_period": self.sync_period, "slow_step_size": self.slow_step_size})
        return config
