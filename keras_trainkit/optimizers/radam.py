"""RAdam: Adam with a rectified adaptive learning rate (Liu et al., 2020)."""

from __future__ import annotations

from keras import ops

from keras_trainkit._compat.keras import add_slot_variables
from keras_trainkit.optimizers._base import (
    TrainkitOptimizer,
    bias_correction,
    check_beta,
    check_epsilon,
)
from keras_trainkit.optimizers._registry import register
from keras_trainkit.utils import validation


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
        warmup_steps = self.total_steps * self.warmup_proportion
        decay_steps = max(self.total_steps - warmup_steps, 1.0)
        decay_rate = (self.min_lr - lr) / decay_steps
        warm = lr * step / max(warmup_steps, 1.0)
        decayed = lr + decay_rate * ops.minimum(step - warmup_steps, decay_steps)
        return ops.where(step <= warmup_steps, warm, decayed)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        if self.total_steps > 0:
            lr = self._warmup_learning_rate(lr, step)

        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (gradient - m) * (1.0 - self.beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1.0 - self.beta_2))

        m_hat = m / bias_correction(self.beta_1, step, dtype)
        beta_2_power = ops.power(ops.convert_to_tensor(self.beta_2, dtype=dtype), step)
        v_hat = v / (1.0 - beta_2_power)
        rho_inf = 2.0 / (1.0 - self.beta_2) - 1.0
        rho_t = rho_inf - 2.0 * step * beta_2_power / (1.0 - beta_2_power)
        ratio = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
        rectifier = ops.sqrt(ops.maximum(ratio, 0.0))
        rectified = rectifier * m_hat / (ops.sqrt(v_hat) + self.epsilon)
        update = ops.where(rho_t >= self.sma_threshold, rectified, m_hat)

        decay = self._decay_rate(variable)
        if decay is not None:
            update = update + decay * variable
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
