"""Reading numbers out of logs, tensors and variables, one way everywhere."""

from __future__ import annotations

import numpy as np


def to_float(value):
    """``value`` as a Python float, or ``None`` when it is missing or not a single number.

    Accepts Python numbers, NumPy arrays and scalars, tensors and variables of
    any backend (anything ``np.asarray`` reads); a one-element array counts as
    a number.
    """
    if value is None:
        return None
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if array.size != 1:
        return None
    return float(array.reshape(()))


def scalar_logs(logs) -> dict:
    """The entries of Keras ``logs`` that are single numbers, as Python floats.

    Nested dicts (Keras's per-output metric results) are flattened into the
    result; entries that are not single numbers are left out.
    """
    out = {}
    for key, value in (logs or {}).items():
        if isinstance(value, dict):
            out.update(scalar_logs(value))
            continue
        number = to_float(value)
        if number is not None:
            out[key] = number
    return out
