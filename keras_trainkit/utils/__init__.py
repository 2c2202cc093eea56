"""Shared helpers: argument validation, name registries and crash-safe file writes."""

from keras_trainkit.utils.registry import Registry, families
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
