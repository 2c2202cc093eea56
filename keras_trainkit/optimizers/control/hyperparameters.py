"""Scheduling any float hyperparameter of a compiled optimizer (``beta_1``, ``momentum``, ...).

Why a variable is needed: Keras 3 optimizers keep most hyperparameters as plain
Python floats (``Adam.beta_1``, ``SGD.momentum``, ``weight_decay``, ...) and read
them inside ``update_step``. ``model.fit`` traces that code once into a
``tf.function``, so a float is frozen into the graph as a constant: assigning
``optimizer.beta_1 = 0.85`` after the first step changes the attribute but not
the update. :func:`schedule_hyperparameter` therefore replaces the float by a
:class:`HyperparameterVariable` (a ``keras.Variable``), which a traced or
XLA-compiled step reads at run time.
"""

from __future__ import annotations

import numbers

import keras

_MISSING = object()


class HyperparameterVariable(keras.Variable):
    """A scalar ``keras.Variable`` standing in for a float optimizer hyperparameter.

    Arithmetic and tensor conversion read the variable, so a compiled update
    step sees every new value. Comparisons with a Python number (``momentum !=
    0`` in ``SGD``, ``momentum > 0`` in ``RMSprop``) return a Python ``bool``
    computed from the last value set on the host: such checks choose the code
    path when the step is traced, exactly as they do for a float, so the
    scheduled value must stay on the same side of them (e.g. an ``SGD``
    momentum schedule must stay above 0; ``HyperparameterScheduler`` sets a
    scheduled ``SGD``/``RMSprop`` momentum of 0 as the smallest positive double,
    0.0 in the float32 variable and on the momentum side of the check).
    """

    def __init__(self, value, name):
        super().__init__(float(value), dtype="float32", trainable=False, name=name)
        self._host_value = float(value)

    def set_value(self, value: float) -> None:
        """Assign ``value`` (a Python float) to the variable and its host copy."""
        self._host_value = float(value)
        self.assign(self._host_value)

    @property
    def host_value(self) -> float:
        """The last value set, as a Python float (no device read)."""
        return self._host_value

    def _compare(self, other, op, fallback):
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return op(self._host_value, float(other))
        return fallback(other)

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b, super().__eq__)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b, super().__ne__)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b, super().__lt__)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b, super().__le__)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b, super().__gt__)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b, super().__ge__)

    __hash__ = object.__hash__

    def __float__(self):
        return self._host_value


class _ConfigWithFloats:
    """Stands in for ``optimizer.get_config``: scheduled variables are written as floats.

    Without it ``model.save`` would serialize the variable as a tensor, which
    Keras's own constructors (``SGD`` checks ``isinstance(momentum, float)``)
    refuse on load.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def __call__(self):
        config = type(self.optimizer).get_config(self.optimizer)
        return {
            key: value.host_value if isinstance(value, HyperparameterVariable) else value
            for key, value in config.items()
        }


def schedule_hyperparameter(optimizer, name: str) -> HyperparameterVariable:
    """Make ``optimizer.<name>`` a :class:`HyperparameterVariable` (idempotent) and return it.

    After this, assigning the variable changes the hyperparameter inside a
    compiled step; retrace (:func:`retrace`) if the step was traced before.
    The variable is not tracked in ``optimizer.variables`` (so saved optimizer
    states keep their layout); its current value is written into
    ``optimizer.get_config()`` as a float. The learning rate has its own
    handle (:class:`LearningRateHandle`).

    Raises:
        ValueError: if the optimizer has no such attribute or it is not a real
            number (``weight_decay=None`` is accepted and starts at 0).
    """
    if name == "learning_rate":
        raise ValueError(
            "The learning rate is not scheduled as a hyperparameter variable: use "
            f"LearningRateHandle. Received: hyperparameter={name!r}"
        )
    current = getattr(optimizer, name, _MISSING)
    if isinstance(current, HyperparameterVariable):
        return current
    if current is _MISSING:
        raise ValueError(
            f"Argument `hyperparameter` must name an attribute of the optimizer, but "
            f"{type(optimizer).__name__} has no `{name}`. Received: hyperparameter={name!r}"
        )
    if current is None and name == "weight_decay":
        current = 0.0
    if isinstance(current, keras.Variable) or isinstance(current, bool) or not isinstance(
        current, numbers.Real
    ):
        raise ValueError(
            f"Argument `hyperparameter` must name a float hyperparameter of the optimizer; "
            f"{type(optimizer).__name__}.{name} is {current!r}. Received: hyperparameter={name!r}"
        )
    variable = HyperparameterVariable(current, name=f"{name}_scheduled")
    # Neither goes through `setattr`: Keras's attribute tracker would add the variable to
    # `optimizer.variables`, change the saved optimizer layout, and `load_model` would then
    # skip the whole optimizer state.
    stored = getattr(type(optimizer), name, None)
    if isinstance(stored, property):
        stored.fset(optimizer, variable)  # a property over stored state (TrainkitOptimizer.weight_decay)
    else:
        object.__setattr__(optimizer, name, variable)
    if not isinstance(optimizer.__dict__.get("get_config"), _ConfigWithFloats):
        object.__setattr__(optimizer, "get_config", _ConfigWithFloats(optimizer))
    return variable
