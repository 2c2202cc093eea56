"""The label range a compiled loss implies, checked before training.

A sparse categorical cross-entropy on a model with ``C`` outputs takes class
ids ``0 .. C - 1`` (TensorFlow otherwise fails inside the first step with a
53-line ``InvalidArgumentError``, or, for fractional ids, trains on truncated
labels without a word); a binary (focal) cross-entropy takes targets in
``[0, 1]``. Other losses leave the range open and are not checked.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _flat(structure):
    return tf.nest.flatten(structure)


def _loss_label_rule(model):
    """``(loss name, low, high, integer, ignore_class)`` bounding the labels, or ``None``.

    Known for one loss on one output: a sparse categorical cross-entropy takes
    class ids in ``[0, C - 1]`` (``C`` the model's output width), a binary
    (focal) cross-entropy takes targets in ``[0, 1]``.
    """
    loss = getattr(model, "loss", None)
    if isinstance(loss, str):
        try:
            loss = keras.losses.get(loss)
        except (ValueError, TypeError):
            return None
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) != 1:
        return None
    if isinstance(loss, keras.losses.SparseCategoricalCrossentropy) or (
            loss is keras.losses.sparse_categorical_crossentropy):
        width = outputs[0].shape[-1]
        if width is None:
            return None
        ignore = loss.get_config().get("ignore_class") if isinstance(loss, keras.losses.Loss) else None
        return "sparse_categorical_crossentropy", 0, int(width) - 1, True, ignore
    binary = (keras.losses.BinaryCrossentropy, keras.losses.BinaryFocalCrossentropy)
    if isinstance(loss, binary) or loss in (keras.losses.binary_crossentropy,
                                            keras.losses.binary_focal_crossentropy):
        return "binary_crossentropy", 0, 1, False, None
    return None


def label_problem(y, model) -> tuple[str, str] | None:
    """``(requirement, what was received)`` when ``y`` breaks the compiled loss's label range."""
    rule = None if model is None or y is None else _loss_label_rule(model)
    if rule is None or len(_flat(y)) != 1:
        return None
    loss, low, high, integer, ignore = rule
    array = np.asarray(_flat(y)[0])
    if array.dtype == np.bool_ or array.size == 0:
        return None
    kept = array if ignore is None else array[array != ignore]
    if kept.size == 0:
        return None
    if integer and np.issubdtype(kept.dtype, np.floating):
        fractional = kept != np.floor(kept)
        if fractional.any():
            return (f"whole-number class ids for the loss {loss} (for soft or one-hot targets "
                    "use categorical_crossentropy)",
                    f"{int(fractional.sum())} fractional value(s), e.g. {kept[fractional].flat[0].item()!r}")
    outside = (kept < low) | (kept > high)
    if not outside.any():
        return None
    what = f"class ids in [0, {high}]" if integer else f"values in [{low}, {high}]"
    whose = f" (the model has {high + 1} outputs)" if integer else ""
    return (f"{what} for the loss {loss}{whose}",
            f"{int(outside.sum())} value(s) outside, e.g. {kept[outside].flat[0].item()!r}; "
            f"its values range from {kept.min().item()!r} to {kept.max().item()!r}")
