"""AdEMAMix: Adam with a second, slow momentum mixed in (Pagliardini et al., 2024)."""

from __future__ import annotations

import math

from keras import ops

from keras_trainkit._compat.keras import add_slot_variables
from keras_trainkit.optimizers._base import (
    TrainkitOptimizer,
    bias_correction,
    check_beta,
    check_epsilon,
    hyperparameter,
    state_dtype,
)
from keras_trainkit.optimizers._registry import register
from keras_trainkit.utils import validation


def alpha_schedule(alpha: float, step, warmup_steps: int):
    """The paper's linear warm-up of ``alpha``: ``min(step * alpha / warmup_steps, alpha)``.

    ``step`` counts updates from 1 (a float32 tensor); ``warmup_steps=0`` keeps ``alpha``.
    """
    if warmup_steps == 0:
        return ops.convert_to_tensor(alpha, dtype="float32")
    return ops.minimum(step * (alpha / warmup_steps), alpha)


def beta_3_schedule(beta_1: float, beta_3: float, step, warmup_steps: int):
    """The paper's warm-up of ``beta_3`` from ``beta_1``, linear in the half-life.

    ``beta_3(t) = min(exp(ln(b1) ln(b3) / ((1 - t/T) ln(b3) + (t/T) ln(b1))), b3)``:
    ``beta_1`` at ``t = 0``, ``beta_3`` from ``t = T`` on, and in between the decay
    whose number of steps to halve, ``ln(0.5) / ln(beta)``, grows linearly in ``t``.
    ``warmup_steps=0`` keeps ``beta_3``. In float32, as ``1 -`` :func:`slow_ema_weight`
    (which the optimizer uses).
    """
    return 1.0 - slow_ema_weight(beta_1, beta_3, step, warmup_steps)


def slow_ema_weight(beta_1: float, beta_3: float, step, warmup_steps: int, dtype="float32"):
    """``1 - beta_3(t)`` (:func:`beta_3_schedule`) in ``dtype``, without cancellation.

    ``1 - beta_3`` is subtracted in Python float64 and the warm-up is
    ``max(-expm1(exponent), 1 - beta_3)``: in float32, ``1 - float32(beta_3)``
    is off by 1.7e-4 (relative) for ``beta_3 = 0.9999``, 1.4e-3 for
    ``0.99999``, 1.3e-2 for ``0.999999``. A ``beta_1`` or ``beta_3`` scheduled as
    a scalar variable (``control.schedule_hyperparameter``) is read at every step.
    """
    floor = ops.convert_to_tensor(1.0 - beta_3, dtype=dtype) if isinstance(beta_3, float) else (
        1.0 - ops.cast(beta_3, dtype)
    )
    if warmup_steps == 0:
        return floor
    log_1, log_3 = (math.log(b) if isinstance(b, float) else ops.log(ops.cast(b, dtype)) for b in (beta_1, beta_3))
    fraction = ops.cast(step, dtype) / warmup_steps
    exponent = (log_1 * log_3) / ((1.0 - fraction) * log_3 + fraction * log_1)
    return ops.maximum(-ops.expm1(exponent), floor)


@register(aliases=("ademamix",))
class AdEMAMix(TrainkitOptimizer):
    """AdEMAMix: Adam whose numerator mixes a fast and a slow moving average of the gradient.

    With ``t`` the update count (from 1)::

        m_1 = beta_1 * m_1 + (1 - beta_1) * g                 (fast EMA)
        m_2 = beta_3(t) * m_2 + (1 - beta_3(t)) * g           (slow EMA, no bias correction)
        v   = beta_2 * v + (1 - beta_2) * g**2
        w  <- w - lr * (m_1 / (1 - beta_1**t) + alpha(t) * m_2) / (sqrt(v / (1 - beta_2**t)) + epsilon)

    With ``warmup_steps=0`` (default) ``alpha(t) = alpha`` and ``beta_3(t) =
    beta_3``. With ``warmup_steps=T`` the paper's schedulers (Section 3,
    Algorithm 1) ramp them up over ``T`` updates, so the slow average, which
    takes ``~1 / (1 - beta_3)`` steps to fill, does not dominate early::

        alpha(t)  = min(t * alpha / T, alpha)
        beta_3(t) = min(exp(ln(beta_1) ln(beta_3) / ((1 - t/T) ln(beta_3) + (t/T) ln(beta_1))), beta_3)

    evaluated at the 1-based ``t`` like the authors' code and pytorch-optimizer
    (``t_alpha_beta3``); optax ``contrib.ademamix`` takes ``alpha`` and ``b3``
    as schedules of its 0-based count, so ``alpha(t)`` there is ours at
    ``t - 1`` unless the schedule adds one.

    Conventions, pinned in ``tests/optimizers/test_reference_ademamix.py``:
    **epsilon** outside the square root of the bias-corrected ``v`` (optax's
    ``eps`` with ``eps_root=0``, pytorch-optimizer); the slow EMA ``m_2`` is not
    bias corrected (the paper); **weight decay** is decoupled and scaled by
    the learning rate (the Keras base class; optax ``weight_decay``,
    pytorch-optimizer ``weight_decouple=True``).

    Args:
        learning_rate: float >= 0, a schedule or a callable. Defaults to ``1e-3``.
        beta_1: decay of the fast EMA, in ``[0, 1)``. Defaults to ``0.9``.
        beta_2: decay of the second moment, in ``[0, 1)``. Defaults to ``0.999``.
        beta_3: decay of the slow EMA, in ``[0, 1)``. Defaults to ``0.9999``.
        alpha: weight of the slow EMA, ``>= 0``. Defaults to ``5.0``.
        warmup_steps: updates over which ``alpha`` and ``beta_3`` warm up
            (``T_alpha = T_beta_3`` in the paper), an integer ``>= 0``; ``0``
            keeps them constant. With a warm-up ``0 < beta_1 <= beta_3`` is
            required. Defaults to ``0``.
        epsilon: ``> 0``, outside the square root. Defaults to ``1e-8``.
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not to decay.
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, numpy as np, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> opt = tk.optimizers.AdEMAMix(1e-3, alpha=8.0, warmup_steps=1000)
        >>> model.compile(optimizer=opt, loss="mse")
        >>> _ = model.fit(np.ones((8, 4)), np.zeros((8, 1)), verbose=0)

    Reference:
        Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster,
        Older", 2024, https://arxiv.org/abs/2409.03137
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        beta_3=0.9999,
        alpha=5.0,
        warmup_steps=0,
        epsilon=1e-8,
        weight_decay=None,
        exclude_from_weight_decay=None,
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            exclude_from_weight_decay=exclude_from_weight_decay,
            **kwargs,
        )
        self.beta_1 = check_beta("beta_1", beta_1)
        self.beta_2 = check_beta("beta_2", beta_2)
        self.beta_3 = check_beta("beta_3", beta_3)
        self.alpha = float(validation.check_non_negative("alpha", alpha))
        self.warmup_steps = int(validation.check_non_negative("warmup_steps", warmup_steps, integer=True))
        self.epsilon = check_epsilon("epsilon", epsilon)
        if self.warmup_steps:
            validation.check_condition(
                "beta_1", beta_1, self.beta_1 > 0, "must be > 0 when `warmup_steps` > 0 (the warm-up of beta_3 starts at beta_1)"
            )
            validation.check_condition(
                "beta_3", beta_3, self.beta_3 >= self.beta_1, f"must be >= beta_1={self.beta_1} when `warmup_steps` > 0"
            )

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._fast, self._slow, self._velocities = add_slot_variables(
            self, var_list, ["fast_momentum", "slow_momentum", "velocity"]
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        fast, slow, v = self._fast[index], self._slow[index], self._velocities[index]
        step = ops.cast(self.iterations + 1, dtype)
        step_32 = ops.cast(self.iterations + 1, "float32")
        alpha = ops.cast(alpha_schedule(self.alpha, step_32, self.warmup_steps), dtype)
        slow_weight = slow_ema_weight(self.beta_1, self.beta_3, step, self.warmup_steps, dtype)

        beta_1, beta_2, epsilon = (hyperparameter(x, dtype) for x in (self.beta_1, self.beta_2, self.epsilon))
        self.assign_add(fast, (gradient - fast) * (1.0 - beta_1))
        self.assign_add(slow, (gradient - slow) * slow_weight)
        self.assign_add(v, (ops.square(gradient) - v) * (1.0 - beta_2))
        numerator = fast / bias_correction(beta_1, step, dtype) + alpha * slow
        denominator = ops.sqrt(v / bias_correction(beta_2, step, dtype)) + epsilon
        self.assign_sub(variable, lr * numerator / denominator)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "beta_3": self.beta_3,
                "alpha": self.alpha,
                "warmup_steps": self.warmup_steps,
                "epsilon": self.epsilon,
            }
        )
        return config
