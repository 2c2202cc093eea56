"""Prodigy: learning-rate-free Adam that estimates the distance to the solution (Mishchenko & Defazio, 2023)."""

from __future__ import annotations

import keras
from keras import ops

from keras_trainkit._compat.keras import add_slot_variables
from keras_trainkit.optimizers._base import (
    TrainkitOptimizer,
    check_beta,
    check_epsilon,
    hyperparameter,
    state_dtype,
)
from keras_trainkit.optimizers._registry import register
from keras_trainkit.utils import validation
from keras_trainkit.utils.validation import check_bool


@register(aliases=("prodigy",))
class Prodigy(TrainkitOptimizer):
    """Prodigy: Adam whose step size ``d`` is estimated on line, so ``learning_rate`` stays 1.

    ``d`` starts at ``d0`` and only grows. With ``t`` the update count (from
    1), ``lr`` the learning-rate *multiplier* (a schedule around 1.0),
    ``w_0`` the weights at the first update, and sums running over **all**
    variables::

        dlr = d * lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        m = beta_1 * m + (1 - beta_1) * d * g
        v = beta_2 * v + (1 - beta_2) * (d * g)**2
        s = beta_3 * s + (d / d0) * dlr * g            (safeguard_warmup: (d / d0) * d * g)
        r = beta_3 * r + (d / d0) * dlr * sum(<g, w_0 - w>)
        d' = max(d, d_coef * r / sum(|s|))
        w <- w - dlr * weight_decay * w - dlr * m / (sqrt(v) + d' * epsilon)

    ``dlr`` uses the old ``d``, the epsilon term the new ``d'``, as in the
    authors' code and optax ``contrib.prodigy`` (so each update runs two passes
    over the variables: moments and sums, then the weights).

    Epsilon placement: **outside** the square root and scaled by ``d'``,
    ``sqrt(v) + d' * epsilon``. Bias correction is always on (as in optax;
    the authors' PyTorch code has it off by default).

    Weight decay is decoupled and scaled by ``dlr`` (not by the bare learning
    rate); a schedule is evaluated at the update count and variables matching
    ``exclude_from_weight_decay`` are not decayed.

    Args:
        learning_rate: multiplier of the estimated step, float >= 0 or a
            schedule (e.g. cosine decay from 1.0). Defaults to ``1.0``.
        beta_1: first-moment decay in ``[0, 1)``. Defaults to ``0.9``.
        beta_2: second-moment decay in ``[0, 1)``. Defaults to ``0.999``.
        beta_3: decay of the ``d`` estimate's sums in ``[0, 1)``; ``None`` uses
            ``sqrt(beta_2)``.
        epsilon: ``> 0``. Defaults to ``1e-8``.
        d0: ``> 0``, the initial (under-)estimate of the step. Defaults to ``1e-6``.
        d_coef: ``> 0``, multiplies each new estimate. Defaults to ``1.0``.
        safeguard_warmup: leave ``lr`` out of the ``s`` update, for
            learning-rate warm-up. Defaults to ``False``.
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not to decay.
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=tk.optimizers.Prodigy(weight_decay=0.01), loss="mse")

    Reference:
        Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive
        Parameter-Free Learner", 2023, https://arxiv.org/abs/2306.06101
    """

    _applies_own_weight_decay = True

    def __init__(
        self,
        learning_rate=1.0,
        beta_1=0.9,
        beta_2=0.999,
        beta_3=None,
        epsilon=1e-8,
        d0=1e-6,
        d_coef=1.0,
        safeguard_warmup=False,
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
        self.beta_3 = None if beta_3 is None else check_beta("beta_3", beta_3)
        self.epsilon = check_epsilon("epsilon", epsilon)
        self.d0 = float(validation.check_positive("d0", d0))
        self.d_coef = float(validation.check_positive("d_coef", d_coef))
        self.safeguard_warmup = check_bool("safeguard_warmup", safeguard_warmup)

    @property
    def _beta_3(self) -> float:
        return self.beta_2**0.5 if self.beta_3 is None else self.beta_3

    @property
    def d(self):
        """The current step-size estimate ``d`` (a scalar variable)."""
        return self._d

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities, self._sums, self._initial_values = (
            add_slot_variables(self, var_list, ["momentum", "velocity", "s", "initial_value"])
        )
        # Global scalars (float64 when a variable is float64, else float32),
        # written in replica context between the two passes, like Keras's own
        # iteration counter.
        wide = any(keras.backend.standardize_dtype(v.dtype) == "float64" for v in var_list)
        self._scalar_dtype = "float64" if wide else "float32"
        scalar = dict(shape=(), dtype=self._scalar_dtype, aggregation="only_first_replica")
        # ``ops.full`` keeps d0 exact in float64 (a Constant initializer rounds via float32).
        self._d = self.add_variable(
            initializer=lambda shape, dtype: ops.full(shape, self.d0, dtype=dtype), name="d", **scalar
        )
        self._previous_d = self.add_variable(name="previous_d", **scalar)
        self._numerator = self.add_variable(name="d_numerator", **scalar)
        self._numerator_step = self.add_variable(name="d_numerator_step", **scalar)
        self._denominator_step = self.add_variable(name="d_denominator_step", **scalar)
        self._pass = "moments"

    def _step_size(self, d, learning_rate, dtype):
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = hyperparameter(self.beta_1, dtype), hyperparameter(self.beta_2, dtype)
        correction = ops.sqrt(1.0 - ops.power(ops.convert_to_tensor(beta_2, dtype=dtype), step)) / (
            1.0 - ops.power(ops.convert_to_tensor(beta_1, dtype=dtype), step)
        )
        return ops.cast(d, dtype) * ops.cast(learning_rate, dtype) * correction

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # Pass 1: moments and the sums of the d estimate, with the old d.
        self._pass = "moments"
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        self._update_d(learning_rate)
        # Pass 2: the weights, with the old d in dlr and the new d next to epsilon.
        self._pass = "weights"
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._pass = "moments"

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        m = self._momentums[index]
        v = self._velocities[index]
        if self._pass == "weights":
            dlr = self._step_size(self._previous_d, learning_rate, dtype)
            update = m / (ops.sqrt(v) + ops.cast(self._d, dtype) * self.epsilon)
            decay = self._decay_rate(variable)
            if decay is not None:
                update = update + decay * ops.cast(variable, dtype)
            self.assign_sub(variable, dlr * update)
            return

        s = self._sums[index]
        w0 = self._initial_values[index]
        d = ops.cast(self._d, dtype)
        # Values, not variables, into ops.where: JAX refuses a Keras variable there.
        weights = ops.cast(variable, dtype)
        w0_value = ops.where(ops.equal(self.iterations, 0), weights, ops.convert_to_tensor(w0))
        self.assign(w0, w0_value)
        self.assign_add(self._numerator_step, ops.cast(ops.sum(gradient * (w0_value - weights)), self._scalar_dtype))
        scaled = d * gradient
        beta_1, beta_2 = hyperparameter(self.beta_1, dtype), hyperparameter(self.beta_2, dtype)
        self.assign_add(m, (scaled - m) * (1.0 - beta_1))
        self.assign_add(v, (ops.square(scaled) - v) * (1.0 - beta_2))
        growth = d if self.safeguard_warmup else self._step_size(d, learning_rate, dtype)
        self.assign(s, self._beta_3 * s + growth * scaled / self.d0)
        self.assign_add(self._denominator_step, ops.cast(ops.sum(ops.abs(s)), self._scalar_dtype))

    def _update_d(self, learning_rate):
        d = ops.convert_to_tensor(self._d)
        dlr = self._step_size(d, learning_rate, self._scalar_dtype)
        numerator = self._beta_3 * self._numerator + (d / self.d0) * dlr * self._numerator_step
        denominator = ops.convert_to_tensor(self._denominator_step)
        safe = ops.where(denominator > 0, denominator, ops.ones_like(denominator))
        estimate = ops.where(denominator > 0, self.d_coef * numerator / safe, d)
        self._previous_d.assign(d)
        self._numerator.assign(numerator)
        self._d.assign(ops.maximum(d, estimate))
        self._numerator_step.assign(ops.zeros_like(numerator))
        self._denominator_step.assign(ops.zeros_like(numerator))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "beta_3": self.beta_3,
                "epsilon": self.epsilon,
                "d0": self.d0,
                "d_coef": self.d_coef,
                "safeguard_warmup": self.safeguard_warmup,
            }
        )
        return config

