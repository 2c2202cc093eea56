"""``fit`` options the Trainer takes as ``model.fit`` does: ``class_weight`` and ``validation_freq``.

* ``class_weight`` (``{class id: weight}``) becomes per-example sample weights
  of the training data (validation is unweighted), as Keras's data adapters
  make them (``keras/src/trainers/data_adapters``): the class of an example is
  its integer label (rank-1 ``y`` or a last axis of 1, rounded) or the argmax of
  a one-hot ``y``; classes missing from the dict weigh 1. As in Keras it
  refuses ``sample_weight`` beside it and models with several outputs.
* ``validation_freq``: validate after epoch ``e`` (0-based) when
  ``(e + 1) % validation_freq == 0`` (an integer) or ``e + 1`` is in it (a list
  of 1-based epochs), as ``model.fit`` does.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from keras_trainkit.training import _data
from keras_trainkit.utils.validation import check_positive


def check_validation_freq(validation_freq):
    """``validation_freq`` checked: a positive integer, or a list/tuple of positive integers (1-based epochs)."""
    if isinstance(validation_freq, (list, tuple)):
        for epoch in validation_freq:
            if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 1:
                raise ValueError("Argument `validation_freq` must be a positive integer or a list of "
                                 f"positive integers (1-based epochs). Received: validation_freq={validation_freq!r}")
        return [int(epoch) for epoch in validation_freq]
    if isinstance(validation_freq, bool) or not isinstance(validation_freq, numbers.Integral):
        raise TypeError("Argument `validation_freq` must be a positive integer or a list of positive "
                        f"integers (1-based epochs). Received: validation_freq={validation_freq!r}")
    return int(check_positive("validation_freq", validation_freq, integer=True))


def should_validate(epoch: int, validation_freq) -> bool:
    """Whether ``fit`` validates after the 0-based ``epoch`` (``model.fit``'s rule)."""
    if isinstance(validation_freq, list):
        return epoch + 1 in validation_freq
    return (epoch + 1) % validation_freq == 0


def check_class_weight(class_weight):
    """``class_weight`` checked: ``None`` or a dict of non-negative integer class ids to numbers."""
    if class_weight is None:
        return None
    if not isinstance(class_weight, dict) or not class_weight:
        raise TypeError("Argument `class_weight` must be a non-empty dict `{class id: weight}`. "
                        f"Received: class_weight={class_weight!r}")
    for key, value in class_weight.items():
        if (isinstance(key, bool) or not isinstance(key, numbers.Integral) or key < 0
                or isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise ValueError("Argument `class_weight` must map non-negative integer class ids to numbers. "
                             f"Received: class_weight={class_weight!r}")
        if not math.isfinite(value) or value < 0:  # as `sample_weight`, which it becomes
            raise ValueError("Argument `class_weight` must map class ids to finite weights >= 0. "
                             f"Received: class_weight={class_weight!r} (class {key}: {value!r})")
    return {int(k): float(v) for k, v in class_weight.items()}


def _refuse(message, class_weight):
    raise ValueError(f"{message} Received: class_weight={class_weight!r}")


def apply_class_weight(x, y, sample_weight, class_weight):
    """The training data with ``class_weight`` turned into sample weights: ``(x, y, sample_weight)``
    for arrays, or ``x`` mapped to ``(x, y, weights)`` batches for a dataset."""
    if class_weight is None:
        return x, y, sample_weight
    if _data.is_dataset(x):
        if not isinstance(x, tf.data.Dataset):
            _refuse("Argument `class_weight` needs a tf.data.Dataset (not a distributed dataset).", class_weight)
        return x.map(_dataset_weights(class_weight)), None, None
    if sample_weight is not None:
        _refuse("Arguments `class_weight` and `sample_weight` cannot be given together (as in Keras).",
                class_weight)
    if y is None or tf.nest.is_nested(y):
        _refuse("Argument `class_weight` needs one target array `y` (a model with a single output).",
                class_weight)
    labels = np.asarray(y)
    if labels.ndim > 1:
        labels = np.squeeze(labels, axis=-1) if labels.shape[-1] == 1 else np.argmax(labels, axis=-1)
    if labels.ndim != 1:
        _refuse("Argument `class_weight` needs one label per example: `y` of shape (n,), (n, 1) or "
                f"one-hot (n, classes); `y` has shape {np.shape(y)}.", class_weight)
    labels = np.round(labels).astype("int64")
    weights = np.array([class_weight.get(int(label), 1.0) for label in labels], dtype=keras.backend.floatx())
    return x, y, weights


def _dataset_weights(class_weight):
    # one entry past the largest listed class: weight 1 for any class not listed (as for arrays)
    size = max(class_weight) + 1
    table = tf.constant([class_weight.get(c, 1.0) for c in range(size)] + [1.0], dtype=keras.backend.floatx())

    def weigh(*batch):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        if sample_weight is not None:
            _refuse("Argument `class_weight` cannot be given for a dataset that yields sample weights "
                    "(as in Keras).", class_weight)
        if tf.nest.is_nested(y):
            _refuse("Argument `class_weight` needs a single target (a model with a single output).",
                    class_weight)
        if y.shape.rank is not None and y.shape.rank >= 2:
            width = y.shape[-1]
            if width is not None:  # decided when traced, as Keras's smart_cond does
                classes = (tf.argmax(y, axis=-1, output_type=tf.int32) if width > 1
                           else tf.cast(tf.round(tf.squeeze(y, axis=-1)), tf.int32))
            else:
                classes = tf.cond(tf.shape(y)[-1] > 1,
                                  lambda: tf.argmax(y, axis=-1, output_type=tf.int32),
                                  lambda: tf.cast(tf.round(y[..., 0]), tf.int32))
        else:
            classes = tf.cast(tf.round(y), tf.int32)
        return x, y, tf.gather(table, tf.clip_by_value(classes, 0, size))

    return weigh
