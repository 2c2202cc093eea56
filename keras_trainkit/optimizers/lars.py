"""LARS: layer-wise adaptive rate scaling for large-batch SGD (You et al., 2017)."""

from __future__ import annotations

import re

from keras import ops

from keras_trainkit._compat.keras import add_slot_variables
from keras_trainkit.optimizers._base import TrainkitOptimizer, check_exclusions, state_dtype
from keras_trainkit.optimizers._registry import register
from keras_trainkit.utils import validation
from keras_trainkit.utils.validation import check_bool


@register(aliases=("lars",))
class LARS(TrainkitOptimizer):
    """LARS: SGD with momentum whose step per variable is scaled by ``||w|| / ||update||``.

    For each variable (a "layer")::

        u = g + weight_decay * w
        trust = trust_coefficient * ||w|| / (||u|| + epsilon)   (1 if ||w|| or ||u|| is 0)
        buf <- momentum * buf + lr * trust * u
        w <- w - buf                                   (nesterov: w - (momentum * buf + lr * trust * u))

    This is optax's ``lars`` (weight decay added before the trust ratio, the
    ratio taken on the decayed update, momentum over ``lr``-scaled steps, so a
    learning-rate schedule acts inside the momentum as in the paper's
    ``v <- m v + gamma lambda (g + beta w)``). The paper's ratio uses
    ``||g|| + weight_decay ||w||`` in the denominator; this one uses
    ``||g + weight_decay w||``.

    Epsilon placement: added to the update norm in the trust-ratio
    denominator, ``||u|| + epsilon``; ``0`` is allowed (zero norms are guarded).

    Weight decay is **coupled** (inside the trust ratio, as in the paper); a
    schedule is evaluated at the update count. Variables matching
    ``exclude_from_weight_decay`` get no decay, and variables matching
    ``exclude_from_layer_adaptation`` (by default the variables excluded from
    weight decay, by the argument or by Keras's ``exclude_from_weight_decay``
    method) use ``trust = 1``, as is usual for biases and normalization layers.

    Args:
        learning_rate: float >= 0 or a schedule. Defaults to ``1.0``.
        momentum: in ``[0, 1)``. Defaults to ``0.9``.
        nesterov: use Nesterov momentum. Defaults to ``False``.
        trust_coefficient: ``> 0``, the paper's ``eta``. Defaults to ``1e-3``.
        epsilon: ``>= 0``, added to the update norm. Defaults to ``0.0``.
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not to decay.
        exclude_from_layer_adaptation: regular expressions of variable names
            stepped without the trust ratio; ``None`` excludes the variables
            excluded from weight decay.
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> opt = tk.optimizers.LARS(1.0, weight_decay=1e-4, exclude_from_weight_decay=["bias"])
        >>> model.compile(optimizer=opt, loss="mse")

    Reference:
        You, Gitman & Ginsburg, "Large Batch Training of Convolutional
        Networks", 2017, https://arxiv.org/abs/1708.03888
    """

    _applies_own_weight_decay = True

    def __init__(
        self,
        learning_rate=1.0,
        momentum=0.9,
        nesterov=False,
        trust_coefficient=0.001,
        epsilon=0.0,
        weight_decay=None,
        exclude_from_weight_decay=None,
        exclude_from_layer_adaptation=None,
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            exclude_from_weight_decay=exclude_from_weight_decay,
            **kwargs,
        )
        self.momentum = float(validation.check_probability("momentum", momentum))
        self.nesterov = check_bool("nesterov", nesterov)
        self.trust_coefficient = float(validation.check_positive("trust_coefficient", trust_coefficient))
        self.epsilon = float(validation.check_non_negative("epsilon", epsilon))
        if exclude_from_layer_adaptation is not None:
            try:
                exclude_from_layer_adaptation = check_exclusions(exclude_from_layer_adaptation)
            except (TypeError, ValueError) as error:
                message = str(error).replace("exclude_from_weight_decay", "exclude_from_layer_adaptation")
                raise type(error)(message) from None
        self.exclude_from_layer_adaptation = exclude_from_layer_adaptation

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = add_slot_variables(self, var_list, "momentum")

    def _adapts(self, variable) -> bool:
        patterns = self.exclude_from_layer_adaptation
        if patterns is None:
            # The variables excluded from weight decay, by the argument or by Keras's
            # method exclude_from_weight_decay(var_list=..., var_names=...).
            return self._use_weight_decay(variable)
        return not any(re.search(pattern, variable.name) for pattern in patterns)

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        lr = ops.cast(learning_rate, dtype)
        update = ops.cast(gradient, dtype)
        weights = ops.cast(variable, dtype)
        decay = self._decay_rate(variable)
        if decay is not None:
            update = update + decay * weights
        if self._adapts(variable):
            weight_norm = ops.sqrt(ops.sum(ops.square(weights)))
            update_norm = ops.sqrt(ops.sum(ops.square(update)))
            ratio = self.trust_coefficient * weight_norm / (update_norm + self.epsilon)
            zero = ops.logical_or(ops.equal(weight_norm, 0.0), ops.equal(update_norm, 0.0))
            update = update * ops.where(zero, ops.ones_like(ratio), ratio)
        step = lr * update
        buf = self._momentums[self._get_variable_index(variable)]
        self.assign(buf, self.momentum * buf + step)
        if self.nesterov:
            self.assign_sub(variable, self.momentum * buf + step)
        else:
            self.assign_sub(variable, buf)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "nesterov": self.nesterov,
                "trust_coefficient": self.trust_coefficient,
                "epsilon": self.epsilon,
                "exclude_from_layer_adaptation": self.exclude_from_layer_adaptation,
            }
        )
        return config
