"""Yogi: Adam with an additive, sign-controlled second moment (Zaheer et al., 2018)."""

from __future__ import annotations

import keras
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


@register(aliases=("yogi",))
class Yogi(TrainkitOptimizer):
    """Yogi: the second moment moves additively towards ``g**2``, so it cannot collapse.

    With ``t`` the update count (from 1), ``m_0 = 0`` and
    ``v_0 = initial_accumulator_value``::

        m_t = beta_1 * m + (1 - beta_1) * g
        v_t = v - (1 - beta_2) * sign(v - g**2) * g**2
        m_hat = m_t / (1 - beta_1**t),   v_hat = v_t / (1 - beta_2**t)
        w <- w - lr * m_hat / (sqrt(v_hat) + epsilon)

    Epsilon placement: **outside** the square root, ``sqrt(v_hat) + epsilon``
    (Algorithm 2 of the paper). Bias correction follows optax's ``yogi`` and TF
    Addons' ``Yogi``; the paper's algorithm has none. ``epsilon`` is large by
    default (``1e-3``, the paper's value).

    Weight decay (float or schedule) uses the decoupled Keras/AdamW form
    ``w <- w - lr * weight_decay * w`` before the update.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to ``1e-2`` (paper).
        beta_1: first-moment decay in ``[0, 1)``. Defaults to ``0.9``.
        beta_2: second-moment rate in ``[0, 1)``. Defaults to ``0.999``.
        epsilon: ``> 0``, outside the square root. Defaults to ``1e-3``.
        initial_accumulator_value: ``>= 0``, the start value of ``v``.
            Defaults to ``1e-6``.
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not to decay.
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=tk.optimizers.Yogi(1e-2), loss="mse")

    Reference:
        Zaheer et al., "Adaptive Methods for Nonconvex Optimization",
        NeurIPS 2018.
    """

    def __init__(
        self,
        learning_rate=0.01,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-3,
        initial_accumulator_value=1e-6,
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
        self.epsilon = check_epsilon("epsilon", epsilon)
        self.initial_accumulator_value = float(
            validation.check_non_negative("initial_accumulator_value", initial_accumulator_value)
        )

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = add_slot_variables(self, var_list, "momentum")
        self._velocities = add_slot_variables(
            self, var_list, "velocity", initializer=keras.initializers.Constant(self.initial_accumulator_value)
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        beta_1, beta_2, epsilon = (hyperparameter(x, dtype) for x in (self.beta_1, self.beta_2, self.epsilon))

        self.assign_add(m, (gradient - m) * (1.0 - beta_1))
        g2 = ops.square(gradient)
        self.assign_sub(v, (1.0 - beta_2) * ops.sign(v - g2) * g2)
        m_hat = m / bias_correction(beta_1, step, dtype)
        v_hat = v / bias_correction(beta_2, step, dtype)
        self.assign_sub(variable, lr * m_hat / (ops.sqrt(v_hat) + epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "initial_accumulator_value": self.initial_accumulator_value,
            }
        )
        return config

