"""Optuna, or an ``ImportError`` that says how to install it.

Optuna is an optional dependency (``pip install "keras-trainkit[optuna]"``):
the Optuna-backed tuning modules import it from here, so a user without it
learns what to install instead of reading a bare ``No module named 'optuna'``.
"""

from __future__ import annotations

from keras_trainkit.utils.validation import MissingPackage

INSTALL_COMMAND = 'pip install "keras-trainkit[optuna]"'

try:
    import optuna
except ImportError as error:  # pragma: no cover - exercised by monkeypatching in the tests
    raise MissingPackage(
        "keras_trainkit.tuning.OptunaSearch needs Optuna, an optional dependency of "
        f"keras-trainkit. Install it with: {INSTALL_COMMAND}") from error

__all__ = ["INSTALL_COMMAND", "optuna"]
