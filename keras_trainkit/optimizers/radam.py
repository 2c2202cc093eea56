"""RAdam: Adam with a rectified adaptive learning rate (Liu et al., 2020)."""

from __future__ import annotations

import math

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


def one_minus_power(beta: float, step, dtype):
    """``1 - beta**step`` to a few units in the last place of ``dtype``, also for ``beta`` near 1.

    Written ``-expm1(step * log(beta))`` with ``log(beta)`` taken in Python
    float64: the subtraction ``1 - beta**step`` in float32 loses the digits of
    a ``beta`` near 1 (``0.999`` becomes ``0.99900001``: 1.3e-5 relative at
    ``step = 1``). A ``beta`` scheduled as a scalar variable
    (``control.schedule_hyperparameter``) is read on the device at every step,
    its logarithm taken in ``dtype`` (``log(0) = -inf`` gives 1).
    """
    if not isinstance(beta, float):
        return -ops.expm1(step * ops.log(ops.cast(beta, dtype)))
    if beta == 0.0:
        return ops.ones_like(step)
    return -ops.expm1(step * ops.cast(math.log(beta), dtype))


def _one_minus_u_over_expm1(u):
    """``g(u) = 1 - u / (exp(u) - 1)`` for ``u >= 0`` without cancellation.

    Below ``u = 1`` the Bernoulli series ``u/2 - u^2/12 + u^4/720 - u^6/30240
    + u^8/1209600`` (next term below 3e-11 there); above it the formula, whose
    subtraction then loses at most two bits.
    """
    squared = u * u
    series = u * (0.5 - u * (1.0 / 12.0 - squared * (1.0 / 720.0 - squared * (1.0 / 30240.0 - squared / 1209600.0))))
    wide = ops.maximum(u, 1.0)
    return ops.where(u < 1.0, series, 1.0 - wide / ops.expm1(wide))


def rectifier_terms(beta_2: float, step, dtype):
    """``(rho_t, rho_inf)`` of RAdam for the update count ``step`` (from 1), without cancellation.

    ``rho_t = rho_inf - 2 t beta_2**t / (1 - beta_2**t)`` subtracts two numbers
    near ``rho_inf = 2 / (1 - beta_2) - 1`` (about 2000 for ``beta_2 = 0.999``),
    which in float32 leaves ``rho_t`` off by up to 1.8e-3 at ``t = 6``. With
    ``L = -log(beta_2)`` and ``u = t L``, ``2 t beta_2**t / (1 - beta_2**t) =
    (2 / L) (1 - g(u))`` (:func:`_one_minus_u_over_expm1`), so
    ``rho_t = (rho_inf - 2 / L) + (2 / L) g(u)``: the constant is taken in
    Python float64 and the rest has no cancellation, so ``rho_t`` is good to
    about 1e-7 relative in float32 (on every backend, without float64).

    A ``beta_2`` scheduled as a scalar variable is read on the device at every
    step and both terms are tensors in ``dtype`` (the constant then carries
    ``dtype``'s round-off; ``L`` is capped at 80 so that ``beta_2 = 0`` gives
    ``rho_t = rho_inf = 1``).
    """
    if not isinstance(beta_2, float):
        beta_2 = ops.cast(beta_2, dtype)
        rho_inf = 2.0 / (1.0 - beta_2) - 1.0
        rate = ops.minimum(-ops.log(beta_2), 80.0)
        return rho_inf - 2.0 / rate + (2.0 / rate) * _one_minus_u_over_expm1(step * rate), rho_inf
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    if beta_2 == 0.0:
        return ops.full_like(step, rho_inf), rho_inf
    rate = -math.log(beta_2)
    offset = ops.cast(rho_inf - 2.0 / rate, dtype)
    g = _one_minus_u_over_expm1(step * ops.cast(rate, dtype))
    return offset + ops.cast(2.0 / rate, dtype) * g, rho_inf


@register(aliases=("radam", "rectified_adam"))
class RAdam(TrainkitOptimizer):
    """Rectified Adam: Adam whose adaptive step is switched on once its variance is tractable.

    With ``t`` the update count (from 1), ``rho_inf = 2 / (1 - beta_2) - 1``::

        m_t = beta_1 * m + (1 - beta_1) * g
        v_t = beta_2 * v + (1 - beta_2) * g**2
        m_hat = m_t / (1 - beta_1**t),   v_hat = v_t / (1 - beta_2**t)
        rho_t = rho_inf - 2 t beta_2**t / (1 - beta_2**t)
        r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        w <- w - lr_t * (r_t * m_hat / (sqrt(v_hat) + epsilon))   if rho_t >= sma_threshold
        w <- w - lr_t * m_hat                                       otherwise

    The step scalars (``1 - beta**t``, ``rho_t``, ``r_t``) are evaluated
    without cancellation (``-expm1(t log(beta))`` and a series for ``rho_t``;
    see :func:`rectifier_terms`) in float32, or float64 for float64 variables:
    equal to the float64 formulas within float32 round-off on every backend
    (JAX without float64 included). The direct float32 formula, as in optax
    and TF Addons, leaves ``rho_t`` off by up to 1.8e-3 at ``t = 6``. A
    ``beta_1`` or ``beta_2`` scheduled at run time (``HyperparameterScheduler``)
    is read at every update; its scalars are then computed from the float32
    variable on the device.

    Epsilon placement: **outside** the square root of the bias-corrected second
    moment, ``sqrt(v_hat) + epsilon`` (as optax's ``radam`` with ``eps_root=0``
    and TF Addons' ``RectifiedAdam``).

    Optional warm-up (TF Addons ``RectifiedAdam``): when ``total_steps > 0``,
    with ``w = total_steps * warmup_proportion``, ``lr_t = lr * t / w`` for
    ``t <= w``, then decays linearly from ``lr`` to ``min_lr`` at
    ``t = total_steps`` and stays there. Otherwise ``lr_t`` is the (possibly
    scheduled) learning rate.

    Weight decay (float or schedule) is decoupled and scaled by ``lr_t``:
    ``w <- w - lr_t * weight_decay * w``.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to ``1e-3``.
        beta_1: first-moment decay in ``[0, 1)``. Defaults to ``0.9``.
        beta_2: second-moment decay in ``[0, 1)``. Defaults to ``0.999``.
        epsilon: ``> 0``, added to ``sqrt(v_hat)``. Defaults to ``1e-8``.
        sma_threshold: the rectified step is used when ``rho_t >= sma_threshold``
            (``> 0``). Defaults to ``5.0`` (TF Addons, optax; the paper uses 4).
        total_steps: ``0`` (no warm-up) or the number of updates of the
            warm-up + linear-decay schedule.
        warmup_proportion: fraction of ``total_steps`` spent warming up, in
            ``[0, 1]``. Defaults to ``0.1``.
        min_lr: learning rate reached at ``total_steps``, ``>= 0``.
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not to
            decay, e.g. ``["bias"]``.
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=tk.optimizers.RAdam(1e-3, total_steps=1000), loss="mse")

    Reference:
        Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
        ICLR 2020, https://arxiv.org/abs/1908.03265
    """

    _applies_own_weight_decay = True

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        sma_threshold=5.0,
        total_steps=0,
        warmup_proportion=0.1,
        min_lr=0.0,
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
        self.sma_threshold = float(validation.check_positive("sma_threshold", sma_threshold))
        self.total_steps = int(validation.check_non_negative("total_steps", total_steps, integer=True))
        self.warmup_proportion = float(
            validation.check_probability("warmup_proportion", warmup_proportion, include_one=True)
        )
        self.min_lr = float(validation.check_non_negative("min_lr", min_lr))

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = add_slot_variables(
            self, var_list, ["momentum", "velocity"]
        )

    def _warmup_learning_rate(self, lr, step):
        warmup_steps = self.total_steps * hyperparameter(self.warmup_proportion, lr.dtype)
        # Python's max for a float; a scheduled proportion is a tensor, read at run time.
        maximum = max if isinstance(warmup_steps, float) else ops.maximum
        decay_steps = maximum(self.total_steps - warmup_steps, 1.0)
        decay_rate = (hyperparameter(self.min_lr, lr.dtype) - lr) / decay_steps
        warm = lr * step / maximum(warmup_steps, 1.0)
        decayed = lr + decay_rate * ops.minimum(step - warmup_steps, decay_steps)
        return ops.where(step <= warmup_steps, warm, decayed)

    def _rectifier(self, step, dtype):
        """``(use_rectified, r_t)``: whether ``rho_t >= sma_threshold``, and the rectifier."""
        rho_t, rho_inf = rectifier_terms(self.beta_2, step, dtype)
        denominator = (rho_inf - 4.0) * (rho_inf - 2.0)
        if isinstance(rho_inf, float):
            scale = ops.cast(rho_inf / denominator if denominator else math.inf, dtype)
        else:  # a scheduled beta_2: rho_inf is a tensor
            scale = rho_inf / denominator
        ratio = (rho_t - 4.0) * (rho_t - 2.0) * scale / rho_t
        return rho_t >= hyperparameter(self.sma_threshold, dtype), ops.sqrt(ops.maximum(ratio, 0.0))

    def update_step(self, gradient, variable, learning_rate):
        # The update in float32 at least (float16 cannot hold rho_inf's digits or g**2).
        dtype = state_dtype(variable.dtype)
        scalar_dtype = dtype
        step = ops.cast(self.iterations + 1, scalar_dtype)
        lr = ops.cast(learning_rate, scalar_dtype)
        if self.total_steps > 0:
            lr = self._warmup_learning_rate(lr, step)
        use_rectified, rectifier = self._rectifier(step, scalar_dtype)
        first_correction = one_minus_power(self.beta_1, step, scalar_dtype)
        second_correction = one_minus_power(self.beta_2, step, scalar_dtype)
        lr, rectifier, first_correction, second_correction = (
            ops.cast(x, dtype) for x in (lr, rectifier, first_correction, second_correction)
        )
        gradient = ops.cast(gradient, dtype)

        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        beta_1, beta_2, epsilon = (hyperparameter(x, dtype) for x in (self.beta_1, self.beta_2, self.epsilon))
        self.assign_add(m, (gradient - m) * (1.0 - beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1.0 - beta_2))

        m_hat = m / first_correction
        v_hat = v / second_correction
        rectified = rectifier * m_hat / (ops.sqrt(v_hat) + epsilon)
        update = ops.where(use_rectified, rectified, m_hat)

        decay = self._decay_rate(variable)
        if decay is not None:
            update = update + decay * ops.cast(variable, dtype)
        self.assign_sub(variable, lr * update)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "sma_threshold": self.sma_threshold,
                "total_steps": self.total_steps,
                "warmup_proportion": self.warmup_proportion,
                "min_lr": self.min_lr,
            }
        )
        return config
