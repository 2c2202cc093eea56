"""Argument checks of the search spaces (:mod:`~keras_trainkit.tuning.spaces`,
:mod:`~keras_trainkit.tuning.architectures`, the recipe that holds them): ranges,
sizes, shapes and Keras names.

A space is made before the search starts and builds a model in every trial, so a
bad range or name found at build time fails trial after trial (or, for a default
outside its range, trains a model the user excluded). These checks run when the
space is made, with the library's message shape (``Received: name=value``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

from keras_trainkit.utils.validation import check_condition


def is_number(value, integer: bool = False) -> bool:
    """Whether ``value`` is a real number (an integer with ``integer``), not a bool."""
    kind = numbers.Integral if integer else numbers.Real
    return isinstance(value, kind) and not isinstance(value, bool)


def check_range(name: str, value, minimum, *, below=None, integer: bool = False) -> tuple:
    """A ``(low, high)`` pair with ``minimum <= low <= high`` (and ``high < below``)."""
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(is_number(v, integer) for v in value)
          and minimum <= value[0] <= value[1] and (below is None or value[1] < below))
    bounds = f"{minimum} <= low <= high" + ("" if below is None else f" < {below}")
    check_condition(name, value, ok,
                    f"must be a (low, high) pair of {'integers' if integer else 'numbers'} "
                    f"with {bounds}")
    return tuple(value)


def check_sizes(name: str, values: Sequence[int]) -> tuple:
    """A non-empty sequence of positive integers (layer widths, kernel sizes, ...)."""
    ok = (isinstance(values, (tuple, list)) and len(values) > 0
          and all(is_number(v, integer=True) and v > 0 for v in values))
    check_condition(name, values, ok, "must list positive integers")
    return tuple(values)


def check_keras_names(name: str, values: Sequence[str], get: Callable, what: str) -> tuple:
    """A non-empty sequence of identifiers that ``get`` (``keras.activations.get``,
    ``keras.initializers.get``) resolves, as the layers will when a trial builds."""
    if isinstance(values, str):
        raise TypeError(f"Argument `{name}` must be a sequence of {what} names, not one string. "
                        f"Received: {name}={values!r}")
    values = tuple(values)
    check_condition(name, values, len(values) > 0, f"must name at least one {what}")
    for value in values:
        try:
            get(value)
        except (ValueError, TypeError) as error:
            raise ValueError(f"Argument `{name}` must name {what}s Keras knows; {value!r} is "
                             f"not one ({error}). Received: {name}={values!r}") from None
    return values


def default_in(low, high, preferred):
    """``preferred`` moved into ``[low, high]``: a space's default where the user's
    range leaves it out (KerasTuner takes a default outside the range as it is)."""
    return min(max(preferred, low), high)


__all__ = ["check_keras_names", "check_range", "check_sizes", "default_in",
           "is_number"]
