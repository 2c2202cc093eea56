"""ADOPT: Adam with the current gradient left out of its own normalization (Taniguchi et al., 2024)."""

from __future__ import annotations

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


@register(aliases=("adopt",))
class ADOPT(TrainkitOptimizer):
    """ADOPT: normalize the gradient by the *previous* second moment, then average it.

    With ``t`` the update count (from 1) and ``c_t = (t - 1)**0.25``::

        t = 1:   v = g**2                       (no step: m and w stay as they are)
        t >= 2:  u = clip(g / max(sqrt(v), epsilon), -c_t, c_t)
                 m = beta_1 * m + (1 - beta_1) * u
                 w <- w - lr * m                (nesterov: lr * (beta_1 * m + (1 - beta_1) * u))
                 v = beta_2 * v + (1 - beta_2) * g**2

    The second moment used at step ``t`` holds gradients up to ``t - 1`` only, and
    the momentum averages *normalized* gradients: the two changes that make Adam
    converge for any ``beta_2``. There is no bias correction.

    Conventions, pinned in ``tests/optimizers/test_reference_adopt.py``:

    * **Epsilon** is a floor on ``sqrt(v)`` (``max(sqrt(v), epsilon)``), not added
      to it, as in the authors' code, optax and pytorch-optimizer.
    * **Clipping** (``use_clipping=True``, the authors' recommended default since
      their November 2024 update) bounds the normalized gradient by
      ``(t - 1)**0.25``, i.e. ``step**0.25`` with the authors' 0-based ``step``:
      1 at the first real update. The authors' code and optax ``contrib.adopt``
      do this; pytorch-optimizer's ``ADOPT`` calls its ``clip_lambda`` with the
      1-based count, a bound of ``t**0.25`` (``2**0.25`` at the first update).
    * **Weight decay** is decoupled and scaled by the learning rate (the Keras
      base class), applied at every update including the first. The authors'
      code skips the first step entirely (no decay then); pytorch-optimizer's
      default is L2 added to the gradient (``weight_decouple=False``).

    Args:
        learning_rate: float >= 0, a schedule or a callable. Defaults to ``1e-3``.
        beta_1: decay of the momentum of normalized gradients, in ``[0, 1)``.
            Defaults to ``0.9``.
        beta_2: decay of the second moment, in ``[0, 1)``. Defaults to ``0.9999``.
        epsilon: floor on ``sqrt(v)``, ``> 0``. Defaults to ``1e-6``.
        use_clipping: clip the normalized gradient to ``[-(t-1)**0.25,
            (t-1)**0.25]``. Defaults to ``True``.
        nesterov: Nesterov momentum, as optax's ``nesterov=True``. Defaults to
            ``False``.
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not to decay.
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, numpy as np, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=tk.optimizers.ADOPT(1e-3), loss="mse")
        >>> _ = model.fit(np.ones((8, 4)), np.zeros((8, 1)), verbose=0)

    Reference:
        Taniguchi, Harada, Minegishi, Oshima, Jeong, Nagahara, Iiyama, Suzuki,
        Iwasawa & Matsuo, "ADOPT: Modified Adam Can Converge with Any beta_2 with
        the Optimal Rate", NeurIPS 2024, https://arxiv.org/abs/2411.02853
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.9999,
        epsilon=1e-6,
        use_clipping=True,
        nesterov=False,
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
        self.use_clipping = validation.check_bool("use_clipping", use_clipping)
        self.nesterov = validation.check_bool("nesterov", nesterov)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = add_slot_variables(self, var_list, ["momentum", "velocity"])

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        m = self._momentums[index]
        v = self._velocities[index]
        first = ops.equal(self.iterations, 0)
        beta_1, epsilon = hyperparameter(self.beta_1, dtype), hyperparameter(self.epsilon, dtype)

        normalized = gradient / ops.maximum(ops.sqrt(v), epsilon)
        if self.use_clipping:
            bound = ops.power(ops.cast(self.iterations, dtype), 0.25)
            normalized = ops.clip(normalized, -bound, bound)
        # The first gradient only seeds v: no momentum, no step.
        normalized = ops.where(first, ops.zeros_like(normalized), normalized)
        self.assign_add(m, (normalized - m) * (1.0 - beta_1))
        direction = m
        if self.nesterov:
            direction = beta_1 * m + (1.0 - beta_1) * normalized
        self.assign_sub(variable, lr * direction)

        decay_2 = ops.where(first, ops.zeros((), dtype=dtype), ops.cast(self.beta_2, dtype))
        self.assign(v, decay_2 * v + (1.0 - decay_2) * ops.square(gradient))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "use_clipping": self.use_clipping,
                "nesterov": self.nesterov,
            }
        )
        return config
