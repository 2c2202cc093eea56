"""The one pipeline from arrays to a batched ``tf.data.Dataset``.

Used by the Trainer, ``datasets.to_dataset``, the tuners' ``RecipeHyperModel``
and SWA's BatchNorm recomputation. The data become tensors once; each batch is
a ``tf.gather`` of (shuffled) indices, so an epoch copies no array, and
``float64`` arrays become ``float32`` (Keras's default float).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _flat(structure):
    return tf.nest.flatten(structure)


def num_examples(x) -> int:
    """The number of examples in ``x`` (an array or a structure of arrays)."""
    return len(_flat(x)[0])


def _gather_fn(arrays):
    tensors = tf.nest.map_structure(tf.convert_to_tensor, arrays)

    def gather(indices):
        return tf.nest.map_structure(lambda t: tf.gather(t, indices), tensors)

    return gather


def array_dataset(x, y=None, sample_weight=None, *, batch_size: int = 32, shuffle: bool = True,
                  seed: int | None = None, repeat: bool = False,
                  drop_remainder: bool = False) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` over arrays, reshuffled each epoch from ``seed``.

    The data become tensors once; each batch is a ``tf.gather`` of shuffled
    indices, so an epoch copies no array. Each epoch draws one seed
    (``Dataset.random``, re-randomized per iteration) and permutes all indices
    with a stateless shuffle: with ``Dataset.shuffle(n)`` instead, the
    process's RSS climbed for 20-30 epochs (about 6 MiB on MNIST-1D), where
    ``model.fit``'s own array pipeline stays flat. One iteration is one epoch;
    with ``repeat=True`` it yields epoch after epoch (each with its own order
    and its own last, partial batch), so that one iterator serves a whole
    ``fit`` and its prefetching runs on across epoch ends. ``drop_remainder``
    drops each epoch's last, partial batch.
    """
    n = num_examples(x)
    batch_size = int(batch_size)
    if shuffle:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        if not repeat:
            seeds = seeds.take(1)
        epochs = seeds.map(lambda s: tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([s, tf.constant(0, tf.int64)])))
        batched_indices = epochs.flat_map(
            lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder))
    else:
        batched_indices = tf.data.Dataset.range(n).batch(batch_size, drop_remainder)
        if repeat:
            batched_indices = batched_indices.repeat()
    return _gathered_batches(x, y, sample_weight, batched_indices)


def ordered_dataset(x, y=None, sample_weight=None, *, order, batch_size: int) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` over arrays in the given example ``order`` (one epoch)."""
    indices = tf.data.Dataset.from_tensor_slices(np.asarray(order, dtype=np.int64))
    return _gathered_batches(x, y, sample_weight, indices.batch(int(batch_size)))


def _gathered_batches(x, y, sample_weight, batched_indices) -> tf.data.Dataset:
    """Batches of the arrays' examples, one gather per batch of ``batched_indices``."""
    parts = (x,) if y is None else ((x, y) if sample_weight is None else (x, y, sample_weight))
    # tf.data takes no Python lists in an element: one array per input or output, given as a
    # list, becomes a tuple (as Keras's own array adapter does; models take either).
    parts = keras.tree.lists_to_tuples(tf.nest.map_structure(_as_float32_if_float64, parts))
    data = batched_indices.map(_gather_fn(parts), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def _as_float32_if_float64(array):
    array = np.asarray(array)
    if array.dtype == np.float64:
        return array.astype(np.float32)
    return array


