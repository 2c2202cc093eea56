"""Cautious: mask the entries of any optimizer's update that disagree with the gradient (Liang et al., 2024)."""

from __future__ import annotations

import math
import re

import keras
from keras import ops

from keras_trainkit._compat.keras import gradient_accumulators
from keras_trainkit.optimizers._base import (
    check_exclusions,
    check_weight_decay,
    deserialize_schedules,
    serialize_schedule,
    state_dtype,
)
from keras_trainkit.optimizers._registry import register
from keras_trainkit.optimizers.control import leaf_optimizers
from keras_trainkit.optimizers.wrapper import (
    OptimizerWrapper,
    check_inner_ema_off,
    check_no_weight_reset_inside,
)
from keras_trainkit.utils.variables import variable_path, warn_unmatched_patterns

_Schedule = keras.optimizers.schedules.LearningRateSchedule


def cautious_mask(update, gradient):
    """``1{update * gradient > 0} * numel / (kept + 1)``: the paper's mask with its rescaling.

    ``update`` is the direction the weights move *against* (``w <- w - lr *
    update``); ``kept`` is the number of agreeing entries of this variable.
    """
    agree = ops.cast(ops.greater(update * gradient, 0), update.dtype)
    numel = float(math.prod(update.shape))
    return agree * (numel / (ops.sum(agree) + 1.0))


@register(aliases=("cautious",))
class Cautious(OptimizerWrapper):
    """Cautious update of any Keras optimizer: keep the entries whose sign agrees with the gradient.

    The inner optimizer takes its step as usual; its update is read back as
    the change of each variable, ``delta = w_after - w_before`` (``delta =
    -lr * u`` for a rule ``w <- w - lr * u``), and replaced by the masked one::

        phi   = 1{u * g > 0} = 1{-delta * g > 0}          (per entry)
        w    <- w_before + delta * phi * numel / (sum(phi) + 1)     (per variable)
        w    <- w - lr * weight_decay * w                 (optional, unmasked, after)

    Reading the update as a difference makes the wrapper exact for *any*
    inner optimizer (Keras's, ours, schedules, clipping, decay: whatever it
    writes), at the cost of one copy of the variables and the rounding of
    one subtraction (``w_after - w_before`` is the inner step rounded to the
    weights' precision: for float32 weights a relative error of about
    ``1e-7 |w| / |delta|`` on the step, far below float32 gradient noise; for
    float16 weights the inner step is already rounded the same way).

    Weight decay: a decay set on the inner optimizer (e.g. ``AdamW``'s) is
    part of its update and is masked with it. The paper's cautious AdamW
    decays every weight, outside the mask, after the step: give the decay
    here (``weight_decay``, ``exclude_from_weight_decay``) and none to the
    inner optimizer. The decay is scaled by the inner optimizer's current
    learning rate (decoupled, as Keras's ``AdamW``).

    On a step where the inner optimizer leaves a variable unchanged (a skipped
    step, an accumulation micro-batch) ``delta = 0`` and nothing changes.

    Gradient accumulation (``gradient_accumulation_steps=k`` on the inner
    optimizer): the mask's ``g`` is the gradient the inner optimizer applies,
    the mean of the ``k`` micro-batch gradients (read from Keras's accumulator
    before the step), not the last micro-batch's. Set it on the optimizer this
    wrapper wraps directly; below another wrapper it is refused.

    ``use_ema`` on the inner optimizer is refused (``ValueError``): Keras
    averages inside the inner step, before the mask, so the average would
    follow weights the model never had. Use the callback
    ``keras_trainkit.callbacks.SWA`` to average weights, or drop it. A
    ``Lookahead`` or ``ScheduleFree`` inside is refused too (the weights they
    set from their own state would be masked as a step): write
    ``Lookahead(Cautious(...))`` or ``ScheduleFree(Cautious(...))``.

    Args:
        optimizer: the inner optimizer: a ``keras.optimizers.Optimizer``, a name
            or a config dict.
        weight_decay: ``None``, a float >= 0 or a ``LearningRateSchedule`` of
            the inner update count; the unmasked decay above.
        exclude_from_weight_decay: regular expressions searched in variable
            names and paths; matching variables are not decayed by
            ``weight_decay`` (Keras's ``exclude_from_weight_decay`` method
            excludes from it too).
        name: the optimizer's name.
        **kwargs: ``loss_scale_factor``; other base-optimizer arguments belong
            on the inner optimizer.

    Example:
        >>> import keras, numpy as np, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> opt = tk.optimizers.Cautious(keras.optimizers.Adam(1e-3), weight_decay=0.01)
        >>> model.compile(optimizer=opt, loss="mse")
        >>> _ = model.fit(np.ones((8, 4)), np.zeros((8, 1)), verbose=0)

    Reference:
        Liang, Chen, Liu & Liu, "Cautious Optimizers: Improving Training with
        One Line of Code", 2024, https://arxiv.org/abs/2411.16085
        (Algorithm 1; the mask ``u * g > 0`` and the rescaling as in the
        authors' code).
    """

    def __init__(self, optimizer, weight_decay=None, exclude_from_weight_decay=None, name=None, **kwargs):
        decay = check_weight_decay(weight_decay)
        exclusions = check_exclusions(exclude_from_weight_decay)
        super().__init__(optimizer, name=name, **kwargs)
        check_inner_ema_off("Cautious", self.inner_optimizer, "Cautious masks the update")
        for leaf in leaf_optimizers(self.inner_optimizer):
            if leaf is not self.inner_optimizer and leaf.gradient_accumulation_steps:
                raise ValueError(
                    "Argument `optimizer` of Cautious may set `gradient_accumulation_steps` only on "
                    "the optimizer Cautious wraps directly (the mask needs the averaged gradient "
                    "that optimizer applies). Received: inner optimizer "
                    f"{type(leaf).__name__}.gradient_accumulation_steps={leaf.gradient_accumulation_steps!r} "
                    f"inside {type(self.inner_optimizer).__name__}"
                )
        check_no_weight_reset_inside(
            "Cautious", self.inner_optimizer, "Cautious masks the change of the weights"
        )
        self.cautious_weight_decay = decay
        self._decay_patterns = exclusions
        self._excluded_ids = set()
        self._excluded_names = ()

    @property
    def weight_decay(self):
        """The unmasked decay (``cautious_weight_decay``, the config's ``weight_decay``): what
        ``control.schedule_hyperparameter(optimizer, "weight_decay")`` schedules."""
        return getattr(self, "cautious_weight_decay", None)

    @weight_decay.setter
    def weight_decay(self, value):
        # Untracked, as TrainkitOptimizer.weight_decay: a scheduled decay's variable must not
        # join `self.variables` (the saved layout).
        object.__setattr__(self, "cautious_weight_decay", value)

    def build(self, variables):
        super().build(variables)
        warn_unmatched_patterns(type(self).__name__, "exclude_from_weight_decay", self._decay_patterns,
                                variables)

    def wrapped_apply(self, grads, variables):
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        # The copies keep the old values on backends whose assign writes in place.
        before = [ops.copy(ops.convert_to_tensor(v)) for _, v in pairs]
        steps = self.inner_optimizer.gradient_accumulation_steps
        if steps:
            # The gradient the inner optimizer applies on an update step: (accumulated + g) / k.
            # On the other micro-batches the inner leaves the weights (delta = 0): no mask matters.
            accumulators = gradient_accumulators(self.inner_optimizer, [v for _, v in pairs])
            pairs = [
                (ops.divide(ops.add(ops.cast(g, acc.dtype), ops.convert_to_tensor(acc)), float(steps)), v)
                for (g, v), acc in zip(pairs, accumulators)
            ]
        count = ops.copy(ops.convert_to_tensor(self.inner_optimizer.iterations))
        rate = self._decay_rate_now()
        self.apply_inner(grads, variables)
        if rate is not None:
            # No decay where the inner optimizer did not update (an accumulation micro-batch).
            stepped = ops.not_equal(ops.convert_to_tensor(self.inner_optimizer.iterations), count)
            rate = ops.where(stepped, rate, ops.zeros_like(rate))
        for (gradient, variable), old in zip(pairs, before):
            variable.assign(self._cautious_value(gradient, variable, old, rate))

    def _cautious_value(self, gradient, variable, old, rate):
        """``old + masked delta``, then the unmasked decay; float32 math for half-precision weights."""
        dtype = state_dtype(variable.dtype)
        old = ops.cast(old, dtype)
        delta = ops.cast(ops.convert_to_tensor(variable), dtype) - old
        gradient = ops.cast(gradient, dtype)
        new_value = old + delta * cautious_mask(-delta, gradient)
        if rate is not None and self._decays(variable):
            new_value = new_value - ops.cast(rate, dtype) * new_value
        return ops.cast(new_value, variable.dtype)

    def _decay_rate_now(self):
        """``learning_rate * weight_decay`` at the inner update count before this step, or ``None``."""
        decay = self.cautious_weight_decay
        if decay is None:
            return None
        if isinstance(decay, _Schedule):
            decay = decay(self.inner_optimizer.iterations)
        return ops.cast(self.inner_optimizer.learning_rate, "float32") * ops.cast(decay, "float32")

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Keras's method: exclude variables (objects, or name regular expressions) from decay.

        Applies to this wrapper's unmasked ``weight_decay`` and to the inner
        optimizer's own decay; it adds to ``exclude_from_weight_decay`` given
        at construction and, as in Keras, is not saved in the config.
        """
        try:
            check_exclusions(var_names)
        except (TypeError, ValueError) as error:
            raise type(error)(str(error).replace("exclude_from_weight_decay", "var_names")) from None
        super().exclude_from_weight_decay(var_list=var_list, var_names=var_names)
        self._excluded_ids = {id(variable) for variable in var_list or ()}
        self._excluded_names = tuple(var_names or ())

    def _decays(self, variable) -> bool:
        if id(variable) in self._excluded_ids:
            return False
        # Searched in the name (as Keras and the other optimizers do: "^bias$") and in the path ("d1/").
        names = (variable.name, variable_path(variable))
        patterns = tuple(self._decay_patterns or ()) + self._excluded_names
        return not any(re.search(pattern, name) for pattern in patterns for name in names)

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = serialize_schedule(self.cautious_weight_decay)
        config["exclude_from_weight_decay"] = list(self._decay_patterns) if self._decay_patterns else None
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = deserialize_schedules(config, ("weight_decay",), custom_objects)
        return super().from_config(config, custom_objects=custom_objects)
