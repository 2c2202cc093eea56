"""Argument checks that raise ``ValueError``/``TypeError`` in one message shape.

Every message says what must hold, then ``Received: name=value``, e.g.::

    ValueError: Argument `learning_rate` must be >= 0. Received: learning_rate=-1.0

Constructors call these in ``__init__`` so bad input fails before any training.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any


def _received(name: str, value: Any) -> str:
    return f"Received: {name}={value!r}"


def _fail(name: str, value: Any, requirement: str, hint: str | None = None) -> ValueError:
    message = f"Argument `{name}` {requirement}. {_received(name, value)}"
    if hint:
        message += f". {hint}"
    return ValueError(message)


def check_type(name: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    """Raise ``TypeError`` unless ``value`` is an instance of ``expected``."""
    if not isinstance(value, expected):
        types = expected if isinstance(expected, tuple) else (expected,)
        names = " or ".join(t.__name__ for t in types)
        raise TypeError(
            f"Argument `{name}` must be of type {names}, not "
            f"{type(value).__name__}. {_received(name, value)}"
        )
    return value


def check_bool(name: str, value: Any) -> bool:
    """Raise ``TypeError`` unless ``value`` is a real ``bool`` (not 0/1)."""
    return check_type(name, value, bool)


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    integer: bool = False,
    hint: str | None = None,
) -> Any:
    """Check that ``value`` is a finite real number (an ``int`` if ``integer``) in range.

    Bounds are inclusive unless ``min_inclusive``/``max_inclusive`` is ``False``.
    Returns the value unchanged so it can be used inline.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "an integer" if integer else "a real number"
        raise TypeError(
            f"Argument `{name}` must be {kind}, not {type(value).__name__}. "
            f"{_received(name, value)}"
        )
    if integer and not isinstance(value, numbers.Integral):
        if not float(value).is_integer():
            raise TypeError(
                f"Argument `{name}` must be an integer, not {type(value).__name__}. "
                f"{_received(name, value)}"
            )
    if not math.isfinite(float(value)):
        raise _fail(name, value, "must be finite", hint)
    if minimum is not None:
        if (min_inclusive and value < minimum) or (not min_inclusive and value <= minimum):
            op = ">=" if min_inclusive else ">"
            raise _fail(name, value, f"must be {op} {minimum}", hint)
    if maximum is not None:
        if (max_inclusive and value > maximum) or (not max_inclusive and value >= maximum):
            op = "<=" if max_inclusive else "<"
            raise _fail(name, value, f"must be {op} {maximum}", hint)
    return value


def check_positive(name: str, value: Any, *, integer: bool = False, hint: str | None = None):
    """Check ``value > 0``."""
    return check_number(name, value, minimum=0, min_inclusive=False, integer=integer, hint=hint)


def check_non_negative(name: str, value: Any, *, integer: bool = False, hint: str | None = None):
    """Check ``value >= 0``."""
    return check_number(name, value, minimum=0, integer=integer, hint=hint)


def check_probability(name: str, value: Any, *, include_one: bool = False, include_zero: bool = True):
    """Check ``value`` lies in ``[0, 1)`` (or ``[0, 1]`` with ``include_one``)."""
    return check_number(
        name,
        value,
        minimum=0.0,
        maximum=1.0,
        min_inclusive=include_zero,
        max_inclusive=include_one,
    )


def check_in(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices``."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # unhashable or incomparable value
        ok = False
    if not ok:
        listed = ", ".join(repr(c) for c in choices)
        raise _fail(name, value, f"must be one of {listed}")
    return value


def check_condition(name: str, value: Any, ok: bool, requirement: str, hint: str | None = None):
    """Raise ``ValueError`` with the standard shape when ``ok`` is false.

    ``requirement`` completes the sentence "Argument `name` ...", e.g.
    ``"must be less than `maximal_learning_rate`"``.
    """
    if not ok:
        raise _fail(name, value, requirement, hint)
    return value


def check_learning_rate(name: str, value: Any) -> Any:
    """Accept a non-negative float, a ``LearningRateSchedule`` or a callable of the step."""
    import keras

    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule) or callable(value):
        return value
    if isinstance(value, keras.Variable):
        return value
    return check_non_negative(name, value)
