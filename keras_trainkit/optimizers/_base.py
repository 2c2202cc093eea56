"""A thin base for keras_trainkit optimizers on top of ``keras.optimizers.Optimizer``.

The Keras base class already does gradient clipping (``clipnorm``,
``clipvalue``, ``global_clipnorm``), EMA of the weights (``use_ema``), gradient
accumulation (``gradient_accumulation_steps``), loss scaling
(``loss_scale_factor``), the step counter and decoupled weight decay with
name-pattern exclusions. :class:`TrainkitOptimizer` keeps all of that and adds
only what Keras lacks:

* ``weight_decay`` may be a float **or** a
  ``keras.optimizers.schedules.LearningRateSchedule``. A schedule is evaluated
  at the current *update* count ``optimizer.iterations`` (optimizer updates
  applied so far, starting at 0; with ``gradient_accumulation_steps=k`` this is
  micro-batches // k).
* The learning-rate schedule counts updates too (``UpdateCountScheduleMixin``):
  under ``gradient_accumulation_steps=k`` Keras 3.15 evaluates it at the
  micro-batch count; ours evaluate it at ``optimizer.iterations``.
* Weight decay is decoupled and multiplied by the learning rate, as in Keras's
  ``AdamW`` and Loshchilov & Hutter (2019): before the update step,
  ``w <- w - learning_rate * weight_decay * w``. Optimizers whose paper puts
  the decay elsewhere (LARS inside the trust ratio, NovoGrad inside the
  momentum, Adan as a proximal step, Prodigy scaled by its estimated step size)
  set ``_applies_own_weight_decay = True`` and apply it in ``update_step``; each
  says where in its docstring.
* ``exclude_from_weight_decay=[...]`` as a constructor argument (serialized in
  ``get_config``): regular expressions searched in each variable's name, the
  same mechanism as Keras's ``Optimizer.exclude_from_weight_decay(var_names=...)``
  (e.g. ``["bias", "gamma", "beta"]`` for biases and normalization layers).
* Validation of every constructor argument with one error shape
  (``... Received: name=value``).
* 16-bit floating-point variables (``float16``, ``bfloat16``) keep their
  slots in float32 and subclasses compute their update in it
  (:func:`state_dtype`); the new value is cast to the variable's dtype.
* Sparse gradients (``tf.IndexedSlices``, TensorFlow backend) are made dense
  in ``apply``, before clipping, accumulation and ``update_step``: rows with a
  repeated index are summed, absent rows are zero, so an update equals the one
  the densified gradient gives (see ``keras_trainkit/optimizers/_sparse.py``).
"""

from __future__ import annotations

import numbers
import re
from typing import Any

import keras
from keras import ops

from keras_trainkit.optimizers._sparse import densify_all
from keras_trainkit.optimizers._update_count import UpdateCountScheduleMixin
from keras_trainkit.utils.dtypes import float32_if_half, is_half
from keras_trainkit.utils import validation

_Schedule = keras.optimizers.schedules.LearningRateSchedule


def check_weight_decay(value: Any) -> Any:
    """Accept ``None``, a non-negative float, a ``LearningRateSchedule`` or a scalar variable.

    A ``keras.Variable`` is what ``optimizers.control.schedule_hyperparameter``
    installs to schedule the decay from a callback.
    """
    if value is None or isinstance(value, (_Schedule, keras.Variable)):
        return value
    return float(validation.check_non_negative("weight_decay", value))


def serialize_schedule(value: Any) -> Any:
    """A hyperparameter as ``get_config`` records it: a float, ``None`` or a serialized schedule."""
    return keras.optimizers.schedules.serialize(value) if isinstance(value, _Schedule) else value


def deserialize_schedules(config: dict, keys, custom_objects=None) -> dict:
    """A copy of ``config`` with the serialized schedules under ``keys`` built again."""
    config = dict(config)
    for key in keys:
        if isinstance(config.get(key), dict):
            config[key] = keras.optimizers.schedules.deserialize(config[key], custom_objects=custom_objects)
    return config


def check_exclusions(value: Any) -> list[str] | None:
    """Check ``exclude_from_weight_decay``: ``None`` or a list of regular expressions."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(
            "Argument `exclude_from_weight_decay` must be a list of strings (regular "
            "expressions searched in variable names), not "
            f"{type(value).__name__}. Received: exclude_from_weight_decay={value!r}"
        )
    for pattern in value:
        validation.check_type("exclude_from_weight_decay", pattern, str)
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(
                "Argument `exclude_from_weight_decay` must hold valid regular "
                f"expressions ({error}). Received: exclude_from_weight_decay={value!r}"
            ) from None
    return list(value)


def _check_optional_positive(name: str, value: Any) -> Any:
    return None if value is None else validation.check_positive(name, value)


_INT64_MAX = 2**63 - 1


def _check_count(name: str, value: Any, minimum: int) -> None:
    """A step count Keras uses in integer arithmetic with its int64 step counter: an ``int``.

    ``2.0`` is refused: Keras would fail at the first step (``iterations % 2.0``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Argument `{name}` must be an integer (an int, not {type(value).__name__}). "
            f"Received: {name}={value!r}"
        )
    validation.check_number(name, value, minimum=minimum, maximum=_INT64_MAX, integer=True)


def _check_keras_arguments(kwargs: dict[str, Any]) -> None:
    """Validate the arguments the Keras base class takes (it checks only some)."""
    name = kwargs.get("name")
    if name is not None:
        validation.check_type("name", name, str)
    for key in ("clipnorm", "clipvalue", "global_clipnorm", "loss_scale_factor"):
        _check_optional_positive(key, kwargs.get(key))
    validation.check_type("use_ema", kwargs.get("use_ema", False), bool)
    validation.check_number("ema_momentum", kwargs.get("ema_momentum", 0.99), minimum=0.0, maximum=1.0)
    frequency = kwargs.get("ema_overwrite_frequency")
    if frequency is not None:
        _check_count("ema_overwrite_frequency", frequency, minimum=1)
    steps = kwargs.get("gradient_accumulation_steps")
    if steps is not None:
        _check_count("gradient_accumulation_steps", steps, minimum=2)


class TrainkitOptimizer(UpdateCountScheduleMixin, keras.optimizers.Optimizer):
    """Base of keras_trainkit's optimizers: Keras's ``Optimizer`` plus weight-decay schedules.

    Subclasses write ``build()`` and ``update_step()`` as in
    ``keras.optimizers.Adam``. Weight decay is decoupled and scaled by the
    learning rate: ``w <- w - learning_rate * weight_decay(t) * w`` before the
    update, where ``weight_decay(t)`` is the float or the schedule evaluated at
    the update count ``t = optimizer.iterations``.

    Args:
        learning_rate: a float >= 0, a ``LearningRateSchedule`` or a callable.
        weight_decay: ``None``, a float >= 0 or a ``LearningRateSchedule`` of
            the update count.
        exclude_from_weight_decay: ``None`` or a list of regular expressions;
            a variable whose name matches one is not decayed.
        **kwargs: the Keras base arguments (``clipnorm``, ``clipvalue``,
            ``global_clipnorm``, ``use_ema``, ``ema_momentum``,
            ``ema_overwrite_frequency``, ``loss_scale_factor``,
            ``gradient_accumulation_steps``, ``name``).

    Example:
        >>> import keras_trainkit as tk
        >>> opt = tk.optimizers.AdaBelief(1e-3, weight_decay=1e-2,
        ...                              exclude_from_weight_decay=["bias"])
        >>> opt.get_config()["exclude_from_weight_decay"]
        ['bias']
    """

    #: Set by subclasses whose update rule applies the weight decay itself.
    _applies_own_weight_decay = False

    def __init__(self, learning_rate, weight_decay=None, exclude_from_weight_decay=None, **kwargs):
        learning_rate = validation.check_learning_rate("learning_rate", learning_rate)
        if isinstance(learning_rate, (int, float)) and not isinstance(learning_rate, bool):
            learning_rate = float(learning_rate)
        weight_decay = check_weight_decay(weight_decay)
        exclusions = check_exclusions(exclude_from_weight_decay)
        _check_keras_arguments(kwargs)
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, **kwargs)
        self._exclude_names = exclusions
        if exclusions:
            self.exclude_from_weight_decay(var_names=exclusions)

    # ``BaseOptimizer.__init__`` assigns ``self.weight_decay``; the property keeps the
    # float or schedule and hands Keras's own decay code the current value.
    @property
    def weight_decay(self):
        """The weight decay now: ``None``, a float, or the schedule's value at ``iterations``."""
        value = self._weight_decay
        if isinstance(value, _Schedule):
            return value(self.iterations)
        return value

    @weight_decay.setter
    def weight_decay(self, value):
        # Not through Keras's attribute tracker: a scheduled decay's variable
        # (control.schedule_hyperparameter) would join `self.variables`, change the saved
        # layout, and `load_model` would then skip the whole optimizer state.
        object.__setattr__(self, "_weight_decay", check_weight_decay(value))

    def apply(self, grads, trainable_variables=None):
        """Keras's ``apply``, with gradients made dense and put in each variable's state dtype first.

        Sparse gradients are summed per index (``_sparse.densify``); a 16-bit
        variable's gradient is cast to float32, the dtype of its slots and
        of Keras's gradient accumulator (:func:`state_dtype`).
        """
        grads = list(grads)
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
        known = trainable_variables if trainable_variables is not None else (
            self._trainable_variables if self.built else None
        )
        if known is None or len(known) != len(grads):
            # Keras's apply reports a mismatch.
            return super().apply(densify_all(grads), trainable_variables)
        grads = [
            None if g is None else ops.cast(g, state_dtype(v.dtype)) if _is_half(v) else g
            for g, v in zip(densify_all(grads, known), known)
        ]
        return super().apply(grads, trainable_variables)

    def add_variable_from_reference(self, reference_variable, name=None, initializer="zeros"):
        """Keras's slot for ``reference_variable``, in :func:`state_dtype` (float32 for a 16-bit variable).

        Every slot made through ``add_optimizer_variables`` goes through here,
        Keras's gradient accumulators and EMA averages included.
        """
        dtype = state_dtype(reference_variable.dtype)
        if dtype == keras.backend.standardize_dtype(reference_variable.dtype):
            return super().add_variable_from_reference(reference_variable, name=name, initializer=initializer)
        path = getattr(reference_variable, "path", None) or str(reference_variable.name).replace(":", "_")
        return self.add_variable(
            shape=reference_variable.shape,
            initializer=initializer,
            dtype=dtype,
            name=f"{path.replace('/', '_')}_{name or 'var'}",
        )

    def _apply_weight_decay(self, variables):
        if self._applies_own_weight_decay:
            return
        super()._apply_weight_decay(variables)

    def _decay_rate(self, variable):
        """The weight decay for ``variable`` in its :func:`state_dtype`, or ``None`` when it is not decayed.

        For subclasses that apply the decay in ``update_step``.
        """
        if self._weight_decay is None or not self._use_weight_decay(variable):
            return None
        return ops.cast(self.weight_decay, state_dtype(variable.dtype))

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = serialize_schedule(self._weight_decay)
        config["exclude_from_weight_decay"] = (
            list(self._exclude_names) if self._exclude_names else None
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = deserialize_schedules(config, ("weight_decay",), custom_objects)
        return super().from_config(config, custom_objects=custom_objects)


def check_beta(name: str, value: Any) -> float:
    """Check a moment decay rate lies in ``[0, 1)``."""
    return float(validation.check_probability(name, value))


def check_epsilon(name: str, value: Any) -> float:
    """Check a numerical-stability constant is ``> 0``."""
    return float(validation.check_positive(name, value))


def state_dtype(dtype) -> str:
    """The dtype to keep an optimizer's state in and compute its update in, for a variable of ``dtype``.

    ``"float32"`` for 16-bit floating-point variables (``float16``,
    ``bfloat16``): their range and precision cannot hold squared gradients,
    second-moment statistics or matrix roots (``float16`` overflows above
    65504 and has no eigendecomposition kernel); otherwise ``dtype`` itself.
    """
    return float32_if_half(dtype)


def _is_half(variable) -> bool:
    return is_half(variable.dtype)


def hyperparameter(value, dtype):
    """A float hyperparameter ready for arithmetic with tensors of ``dtype``.

    A Python number (or ``None``, for an optional one) is returned as it is
    (the update's numbers stay those of the float). Anything else, chiefly a
    ``HyperparameterVariable`` that ``control.schedule_hyperparameter``
    installed (a float32 scalar read at every step), is cast to ``dtype``: ``(g - m) * (1.0 - beta)`` would
    otherwise multiply a float64 (or other non-float32) tensor by a float32
    one, which TensorFlow refuses.
    """
    if value is None or isinstance(value, numbers.Real):
        return value
    return ops.cast(value, dtype)


def bias_correction(beta: float, step, dtype):
    """``1 - beta ** step`` in ``dtype`` (``beta`` converted straight to ``dtype``, not via float32)."""
    return 1.0 - ops.power(ops.convert_to_tensor(beta, dtype=dtype), step)
