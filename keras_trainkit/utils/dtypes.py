"""Which dtype to compute in: 16-bit floats widened to float32, one rule everywhere."""

from __future__ import annotations

import keras

#: The 16-bit floating-point dtypes, whose sums, squares and small scales are computed in float32.
HALF_FLOATS = ("float16", "bfloat16")


def is_half(dtype) -> bool:
    """Whether ``dtype`` (a string, NumPy, TensorFlow or Keras dtype) is ``float16`` or ``bfloat16``."""
    return keras.backend.standardize_dtype(dtype) in HALF_FLOATS


def float32_if_half(dtype) -> str:
    """``"float32"`` for a 16-bit float ``dtype`` (range and precision too small for sums of
    squares, small scales or a mean to be rounded once), else ``dtype`` itself, as a string."""
    return "float32" if is_half(dtype) else keras.backend.standardize_dtype(dtype)
