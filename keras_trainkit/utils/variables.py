"""What a variable is called: one rule for matching patterns and recording checkpoints."""

from __future__ import annotations


def variable_path(variable) -> str:
    """A variable's Keras path (``"dense/kernel"``), the name that patterns (layer-wise
    learning rates, clipping and centralization patterns, Muon's exclusions, the training
    monitor's layers) are matched against. A variable without a path (a ``tf.Variable``)
    gives its name without TensorFlow's output suffix (``"dense/kernel:0"`` ->
    ``"dense/kernel"``)."""
    path = getattr(variable, "path", None)
    if path:
        return str(path)
    return str(getattr(variable, "name", "")).split(":")[0]
