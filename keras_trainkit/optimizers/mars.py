"""MARS: variance-reduced momentum in an AdamW step (Yuan et al., 2024)."""

from __future__ import annotations

from keras import ops

from keras_trainkit._compat.keras import add_slot_variables
from keras_trainkit.optimizers import _adam_branch as adam_branch
from keras_trainkit.optimizers._base import (
    TrainkitOptimizer,
    bias_correction,
    check_beta,
    check_epsilon,
    deserialize_schedules,
    hyperparameter,
    serialize_schedule,
    state_dtype,
)
from keras_trainkit.optimizers._registry import register
from keras_trainkit.utils import validation


@register(aliases=("mars", "mars_adamw"))
class MARS(adam_branch.AdamBranchMixin, TrainkitOptimizer):
    """MARS-AdamW: AdamW on a variance-reduced, norm-clipped gradient estimate.

    For each variable of rank >= 2 (all variables with ``optimize_1d=True``),
    with ``t`` the update count (from 1) and ``g_0 = 0``::

        c   = g_t + gamma * beta_1 / (1 - beta_1) * (g_t - g_{t-1})
        c  <- c / max(1, ||c||)                        (||.||: the variable's Frobenius norm)
        m   = beta_1 * m + (1 - beta_1) * c
        v   = beta_2 * v + (1 - beta_2) * c**2
        w  <- w - lr * (wd * w + (m / (1 - beta_1**t)) / (sqrt(v / (1 - beta_2**t)) + epsilon))

    ``g_{t-1}`` is the previous step's gradient (on the previous batch): the
    authors' practical "approximate" MARS (``is_approx=True``), which needs one
    gradient per step; the exact variant's second gradient at the old weights
    on the new batch is not taken. Other variables (biases, normalization
    scales) get AdamW with ``adam_beta_1``, ``adam_beta_2``, learning rate
    ``adam_learning_rate`` and decay ``adam_weight_decay``, as in the authors'
    code (``optimize_1d=False``, ``lr_1d``, ``betas_1d``, ``weight_decay_1d``).

    Conventions, pinned in ``tests/optimizers/test_reference_mars.py``:

    * **Epsilon** outside the square root of the *bias-corrected* ``v``, as in
      the authors' code (``sqrt(v) / sqrt(1 - beta_2**t) + eps``).
      pytorch-optimizer 4.1 adds it before the bias correction,
      ``(sqrt(v + 1e-15) + eps) / sqrt(1 - beta_2**t)``: the two agree when
      ``eps`` is small against ``sqrt(v)``.
    * **Which variables**: rank >= 2 (Dense and convolution kernels) get MARS,
      as in pytorch-optimizer; the authors' code uses MARS for rank exactly 2
      and AdamW for convolution kernels.
    * **Weight decay** decoupled, scaled by the learning rate, from the
      weights before the step (the authors' code and the Keras base class).

    Args:
        learning_rate: float >= 0, a schedule or a callable. Defaults to ``3e-3``
            (the authors').
        beta_1: momentum decay, in ``[0, 1)``. Defaults to ``0.95``.
        beta_2: second-moment decay, in ``[0, 1)``. Defaults to ``0.99``.
        gamma: strength of the gradient correction, ``>= 0`` (``0`` gives AdamW
            on norm-clipped gradients). Defaults to ``0.025``.
        epsilon: ``> 0``, see above. Defaults to ``1e-8``.
        optimize_1d: use MARS for variables of rank < 2 too. Defaults to ``False``.
        adam_learning_rate: learning rate of the AdamW branch: ``None`` (the
            same as ``learning_rate``, schedule and changes included), a float
            or a schedule of the update count. Defaults to ``None``.
        adam_beta_1: AdamW branch momentum decay. Defaults to ``0.9``.
        adam_beta_2: AdamW branch second-moment decay. Defaults to ``0.95``.
        adam_weight_decay: AdamW branch decay: ``None`` (the same as
            ``weight_decay``), a float >= 0 or a schedule. Defaults to ``None``
            (the authors' default is 0.1).
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not
            to decay (in either branch).
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, numpy as np, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=tk.optimizers.MARS(3e-3, weight_decay=0.01), loss="mse")
        >>> _ = model.fit(np.ones((8, 4)), np.zeros((8, 1)), verbose=0)

    Reference:
        Yuan, Liu, Wu, Zhou & Gu, "MARS: Unleashing the Power of Variance
        Reduction for Training Large Models", 2024, https://arxiv.org/abs/2411.10438
    """

    _applies_own_weight_decay = True

    def __init__(
        self,
        learning_rate=0.003,
        beta_1=0.95,
        beta_2=0.99,
        gamma=0.025,
        epsilon=1e-8,
        optimize_1d=False,
        adam_learning_rate=None,
        adam_beta_1=0.9,
        adam_beta_2=0.95,
        adam_weight_decay=None,
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
        self.gamma = float(validation.check_non_negative("gamma", gamma))
        self.epsilon = check_epsilon("epsilon", epsilon)
        self.optimize_1d = validation.check_bool("optimize_1d", optimize_1d)
        self.adam_learning_rate = adam_branch.check_adam_learning_rate(adam_learning_rate)
        self.adam_beta_1 = check_beta("adam_beta_1", adam_beta_1)
        self.adam_beta_2 = check_beta("adam_beta_2", adam_beta_2)
        self.adam_weight_decay = adam_branch.check_adam_weight_decay(adam_weight_decay)

    def _uses_mars(self, variable) -> bool:
        return self.optimize_1d or len(variable.shape) >= 2

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = add_slot_variables(self, var_list, ["momentum", "velocity"])
        self._previous_gradients = [
            self.add_variable_from_reference(variable, "previous_gradient") if self._uses_mars(variable) else None
            for variable in var_list
        ]

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        step = ops.cast(self.iterations + 1, dtype)
        if self._uses_mars(variable):
            lr, beta_1, beta_2 = learning_rate, self.beta_1, self.beta_2
            decay = self._decay_rate(variable)
            estimate = self._corrected_gradient(gradient, self._previous_gradients[index])
        else:
            lr = self._adam_learning_rate(learning_rate)
            beta_1, beta_2 = self.adam_beta_1, self.adam_beta_2
            decay = self._adam_decay_rate(variable)
            estimate = gradient
        lr = ops.cast(lr, dtype)
        beta_1, beta_2, epsilon = (hyperparameter(x, dtype) for x in (beta_1, beta_2, self.epsilon))
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, (estimate - m) * (1.0 - beta_1))
        self.assign_add(v, (ops.square(estimate) - v) * (1.0 - beta_2))
        direction = (m / bias_correction(beta_1, step, dtype)) / (
            ops.sqrt(v / bias_correction(beta_2, step, dtype)) + epsilon
        )
        if decay is not None:
            direction = direction + decay * ops.cast(variable, dtype)
        self.assign_sub(variable, lr * direction)

    def _corrected_gradient(self, gradient, previous):
        """``c`` clipped to norm 1; stores ``gradient`` as the next step's ``g_{t-1}``."""
        gamma, beta_1 = (hyperparameter(x, gradient.dtype) for x in (self.gamma, self.beta_1))
        scale = gamma * beta_1 / (1.0 - beta_1)
        corrected = gradient + scale * (gradient - previous)
        self.assign(previous, gradient)
        # The norm in float32: a float16 sum of squares overflows at 65504.
        norm = ops.sqrt(ops.sum(ops.square(ops.cast(corrected, "float32"))))
        return corrected / ops.cast(ops.maximum(norm, 1.0), corrected.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "gamma": self.gamma,
                "epsilon": self.epsilon,
                "optimize_1d": self.optimize_1d,
                "adam_learning_rate": serialize_schedule(self.adam_learning_rate),
                "adam_beta_1": self.adam_beta_1,
                "adam_beta_2": self.adam_beta_2,
                "adam_weight_decay": serialize_schedule(self.adam_weight_decay),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = deserialize_schedules(config, ("adam_learning_rate", "adam_weight_decay"), custom_objects)
        return super().from_config(config, custom_objects=custom_objects)
