"""NovoGrad: layer-wise normalized gradients with momentum (Ginsburg et al., 2019)."""

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


@register(aliases=("novograd", "novo_grad"))
class NovoGrad(TrainkitOptimizer):
    """NovoGrad: momentum over gradients normalized by a per-layer second moment.

    Each variable (a "layer" in the paper) keeps a *scalar* second moment of its
    gradient norm. With ``t`` the update count (from 1)::

        v_1 = ||g||**2,   v_t = beta_2 * v + (1 - beta_2) * ||g||**2
        u_t = g / (sqrt(v_t) + epsilon) + weight_decay * w
        m_1 = u_1,        m_t = beta_1 * m + u_t
        w <- w - lr * m_t

    Epsilon placement: **outside** the square root of the scalar moment,
    ``sqrt(v_t) + epsilon`` (Algorithm 1 of the paper; optax ``novograd`` with
    ``eps_root=0``). There is no bias correction (``m`` and ``v`` start from
    the first gradient).

    Weight decay is **coupled** as in the paper: ``weight_decay * w`` is added
    to the normalized gradient inside the momentum (not the decoupled Keras
    form). A schedule is evaluated at the update count; variables matching
    ``exclude_from_weight_decay`` get none.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to ``1e-3``.
        beta_1: momentum in ``[0, 1)``. Defaults to ``0.95`` (paper).
        beta_2: decay of the per-layer second moment in ``[0, 1)``.
            Defaults to ``0.98`` (paper).
        epsilon: ``> 0``, outside the square root. Defaults to ``1e-8``.
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not to decay.
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=tk.optimizers.NovoGrad(1e-2, weight_decay=1e-3), loss="mse")

    Reference:
        Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive
        Moments for Training of Deep Networks", 2019, https://arxiv.org/abs/1905.11286
    """

    _applies_own_weight_decay = True

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.95,
        beta_2=0.98,
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
        self.epsilon = check_epsilon("epsilon", epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = add_slot_variables(self, var_list, "momentum")
        self._norms = []
        for variable in var_list:
            self._norms.append(
                self.add_variable(
                    shape=(),
                    dtype=state_dtype(variable.dtype),
                    name=f"{getattr(variable, 'path', variable.name).replace('/', '_')}_norm",
                )
            )

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        m = self._momentums[index]
        v = self._norms[index]
        beta_1, beta_2, epsilon = (hyperparameter(x, dtype) for x in (self.beta_1, self.beta_2, self.epsilon))

        squared_norm = ops.sum(ops.square(gradient))
        first = ops.equal(self.iterations, 0)
        self.assign(v, ops.where(first, squared_norm, beta_2 * v + (1.0 - beta_2) * squared_norm))
        update = gradient / (ops.sqrt(v) + epsilon)
        decay = self._decay_rate(variable)
        if decay is not None:
            update = update + decay * ops.cast(variable, dtype)
        # m starts at zero, so beta_1 * m + u gives m_1 = u_1.
        self.assign(m, beta_1 * m + update)
        self.assign_sub(variable, lr * m)

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config
