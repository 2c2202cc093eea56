"""Adan: adaptive Nesterov momentum (Xie et al., 2022)."""

from __future__ import annotations

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


@register(aliases=("adan",))
class Adan(TrainkitOptimizer):
    """Adan: Adam-like moments of the gradient and of its change (Nesterov momentum estimate).

    Betas are decay rates (Keras/PyTorch convention: the paper's ``beta_i`` is
    ``1 - beta_i`` here). With ``t`` the update count (from 1) and
    ``d_t = g_t - g_{t-1}`` (``d_1 = 0``), Algorithm 1 of the paper::

        m_t = beta_1 * m + (1 - beta_1) * g_t
        v_t = beta_2 * v + (1 - beta_2) * d_t
        n_t = beta_3 * n + (1 - beta_3) * (g_t + beta_2 * d_t)**2
        u_t = (m_t / (1 - beta_1**t) + beta_2 * v_t / (1 - beta_2**t))
              / (sqrt(n_t / (1 - beta_3**t)) + epsilon)
        w <- (w - lr * u_t) / (1 + lr * weight_decay)

    Epsilon placement: **outside** the square root of the bias-corrected
    ``n``. The weight on the gradient difference is ``beta_2`` (the paper's
    ``1 - beta_2``, as in the authors' code); optax ``adan`` uses
    ``1 - beta_2`` instead, which agrees only at ``beta_2 = 0.5``.

    Weight decay is the paper's **proximal** step,
    ``w <- (w - lr * u) / (1 + lr * weight_decay)``, not the Keras
    subtract-before form; a schedule is evaluated at the update count and
    variables matching ``exclude_from_weight_decay`` are not decayed.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to ``1e-3``.
        beta_1: decay of the gradient average, in ``[0, 1)``. Defaults to ``0.98``.
        beta_2: decay of the gradient-difference average, in ``[0, 1)``.
            Defaults to ``0.92``.
        beta_3: decay of the squared term, in ``[0, 1)``. Defaults to ``0.99``.
        epsilon: ``> 0``, outside the square root. Defaults to ``1e-8``.
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not to decay.
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=tk.optimizers.Adan(1e-3, weight_decay=0.02), loss="mse")

    Reference:
        Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster
        Optimizing Deep Models", 2022, https://arxiv.org/abs/2208.06677
    """

    _applies_own_weight_decay = True

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.98,
        beta_2=0.92,
        beta_3=0.99,
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
        self.epsilon = check_epsilon("epsilon", epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        (
            self._momentums,
            self._differences,
            self._squares,
            self._previous_gradients,
        ) = add_slot_variables(
            self, var_list, ["momentum", "difference", "square", "previous_gradient"]
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        m = self._momentums[index]
        v = self._differences[index]
        n = self._squares[index]
        previous = self._previous_gradients[index]
        beta_1, beta_2, beta_3, epsilon = (
            hyperparameter(x, dtype) for x in (self.beta_1, self.beta_2, self.beta_3, self.epsilon)
        )

        difference = ops.where(ops.equal(self.iterations, 0), ops.zeros_like(gradient), gradient - previous)
        self.assign_add(m, (gradient - m) * (1.0 - beta_1))
        self.assign_add(v, (difference - v) * (1.0 - beta_2))
        self.assign_add(n, (ops.square(gradient + beta_2 * difference) - n) * (1.0 - beta_3))
        self.assign(previous, gradient)

        direction = m / bias_correction(beta_1, step, dtype) + beta_2 * v / bias_correction(beta_2, step, dtype)
        denominator = ops.sqrt(n / bias_correction(beta_3, step, dtype)) + epsilon
        new_value = ops.cast(variable, dtype) - lr * direction / denominator
        decay = self._decay_rate(variable)
        if decay is not None:
            new_value = new_value / (1.0 + lr * decay)
        self.assign(variable, new_value)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "beta_3": self.beta_3,
                "epsilon": self.epsilon,
            }
        )
        return config
