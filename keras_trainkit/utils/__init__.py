"""Shared helpers: argument validation, name registries and crash-safe file writes."""

import importlib

from keras_trainkit.utils.validation import (
    check_condition,
    check_in,
    check_learning_rate,
    check_non_negative,
    check_number,
    check_positive,
    check_probability,
    check_type,
)


def __getattr__(name):
    # The registry imports Keras (and so TensorFlow); `keras_trainkit.utils.validation`
    # stays light for the console script's argument checks and `trainkit datasets`.
    if name in ("Registry", "families"):
        return getattr(importlib.import_module("keras_trainkit.utils.registry"), name)
    raise AttributeError(f"module 'keras_trainkit.utils' has no attribute {name!r}")


__all__ = [
    "Registry",
    "families",
    "check_condition",
    "check_in",
    "check_learning_rate",
    "check_non_negative",
    "check_number",
    "check_positive",
    "check_probability",
    "check_type",
]
