"""AdaBelief: Adam with the second moment of the gradient's surprise (Zhuang et al., 2020)."""

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
from keras_trainkit.utils import validation


@register(aliases=("adabelief", "ada_belief"))
class AdaBelief(TrainkitOptimizer):
    """AdaBelief: step by the belief in the gradient, ``(g - m)**2`` instead of ``g**2``.

    With ``t`` the update count (from 1)::

        m_t = beta_1 * m + (1 - beta_1) * g
        s_t = beta_2 * s + (1 - beta_2) * (g - m_t)**2 + epsilon_root
        m_hat = m_t / (1 - beta_1**t),   s_hat = s_t / (1 - beta_2**t)
        w <- w - lr * m_hat / (sqrt(s_hat) + epsilon)

    Epsilon placement (Algorithm 2 of the paper, optax ``adabelief``):
    ``epsilon_root`` is added **inside** the state ``s`` at every step (so it
    accumulates and is bias-corrected with ``s``), and ``epsilon`` is added
    **outside** the square root. The paper uses one epsilon for both;
    ``epsilon_root=epsilon`` reproduces it.

    Weight decay (float or schedule) uses the decoupled Keras/AdamW form
    ``w <- w - lr * weight_decay * w`` before the update (the paper's
    ``weight_decouple=True``).

    ``beta_1 = 0`` is refused: the belief is then ``(g - g)**2 = 0`` at every
    step, ``s`` holds only ``epsilon_root`` and the step
    ``lr * g / (sqrt(epsilon_root) + epsilon)`` diverges. Since
    ``g - m_t = beta_1 * (g - m_{t-1})``, the step grows like ``1 / beta_1``
    as ``beta_1`` approaches 0: keep it near the default.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to ``1e-3``.
        beta_1: first-moment decay in ``(0, 1)`` (0 is refused, see above).
            Defaults to ``0.9``.
        beta_2: decay of the belief second moment in ``[0, 1)``. Defaults to ``0.999``.
        epsilon: ``> 0``, outside the square root. Defaults to ``1e-16``.
        epsilon_root: ``>= 0``, added to the state ``s`` each step. Defaults to ``1e-16``.
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not to decay.
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=tk.optimizers.AdaBelief(1e-3, weight_decay=1e-2), loss="mse")

    Reference:
        Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
        Observed Gradients", NeurIPS 2020, https://arxiv.org/abs/2010.07468
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-16,
        epsilon_root=1e-16,
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
        self.beta_1 = float(
            validation.check_number(
                "beta_1",
                beta_1,
                minimum=0.0,
                maximum=1.0,
                min_inclusive=False,
                max_inclusive=False,
                hint="With beta_1 = 0 the belief (g - m_t)**2 is always 0, so the step is "
                "lr * g / (sqrt(epsilon_root) + epsilon) and diverges",
            )
        )
        self.beta_2 = check_beta("beta_2", beta_2)
        self.epsilon = check_epsilon("epsilon", epsilon)
        self.epsilon_root = float(validation.check_non_negative("epsilon_root", epsilon_root))

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._beliefs = add_slot_variables(
            self, var_list, ["momentum", "belief"]
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        s = self._beliefs[self._get_variable_index(variable)]
        beta_1, beta_2, epsilon, epsilon_root = (
            hyperparameter(x, dtype) for x in (self.beta_1, self.beta_2, self.epsilon, self.epsilon_root)
        )

        self.assign_add(m, (gradient - m) * (1.0 - beta_1))
        surprise = ops.square(gradient - m)
        self.assign(s, beta_2 * s + (1.0 - beta_2) * surprise + epsilon_root)
        m_hat = m / bias_correction(beta_1, step, dtype)
        s_hat = s / bias_correction(beta_2, step, dtype)
        self.assign_sub(variable, lr * m_hat / (ops.sqrt(s_hat) + epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "epsilon_root": self.epsilon_root,
            }
        )
        return config
