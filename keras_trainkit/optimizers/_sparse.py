"""Sparse gradients made dense before any optimizer or transform reads them.

On the TensorFlow backend the gradient of a gather (``keras.layers.Embedding``,
``ops.take``) is a ``tf.IndexedSlices``: one row of ``values`` per *looked-up*
index, so an id that appears twice in a batch gives two rows with the same
index, and an id that does not appear gives no row. Those rows are summed only
when the slices are scattered into a variable. Anything that squares, takes a
norm of, clips or stores the gradient before that point computes on the wrong
numbers: ``0.1**2 + 0.1**2 != (0.1 + 0.1)**2``, and a row absent from the slices
is not a zero gradient to an update that keeps its own copy of the gradient
(Adan's previous gradient). Keras's own ``Adam`` and ``RMSprop`` square the
rows before summing them.

keras_trainkit defines an update by the dense gradient: the sparse gradient
must give exactly the weights the same gradient densified gives, which is the
TensorFlow Addons test ``test_sparse_repeated_indices`` (two rows of 0.1 at one
index equal one row of 0.2). :func:`densify` sums the rows of each index into a
dense tensor of the variable's shape (absent rows are zero), once, where
gradients enter: ``TrainkitOptimizer.apply`` (so every subclass, its clipping
and its gradient accumulation see it), ``OptimizerWrapper.apply`` (so the
wrappers' hooks and any inner optimizer, Keras's own included, see it) and
``GradientTransform.__call__`` / ``global_norm``.

Every optimizer here updates all of a variable's slots at every step (moments
decay on rows with a zero gradient too), so the dense gradient costs one
variable-sized tensor, the size of the temporaries those updates already make;
no optimizer here has a lazy ("update only the rows seen") rule.

On JAX and PyTorch gradients are dense arrays and :func:`densify` returns them
unchanged.
"""

from __future__ import annotations

import keras


def densify(gradient, variable=None):
    """``gradient`` as a dense tensor: a ``tf.IndexedSlices`` summed per index, else unchanged.

    Args:
        gradient: a gradient tensor, a ``tf.IndexedSlices`` or ``None``.
        variable: the variable the gradient belongs to (its first dimension
            sets the number of rows); without it the slices' ``dense_shape``.

    Returns:
        ``None`` for ``None``; for slices with ``values`` of shape
        ``(k, *rest)`` and ``indices`` of shape ``(k,)``, the tensor ``d`` of
        shape ``(rows, *rest)`` with ``d[i] = sum of values[j] where
        indices[j] == i`` (zero where ``i`` is absent); otherwise ``gradient``.

    Example:
        >>> import numpy as np
        >>> g = densify(np.ones((2, 3), "float32"))
        >>> g.shape
        (2, 3)
    """
    if gradient is None or keras.backend.backend() != "tensorflow":
        return gradient
    import tensorflow as tf

    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    if variable is not None and variable.shape[0] is not None:
        rows = int(variable.shape[0])
    elif gradient.dense_shape is not None:
        rows = gradient.dense_shape[0]
    else:
        raise ValueError(
            "Argument `gradient` must be a tf.IndexedSlices with a `dense_shape`, or come "
            f"with its variable, to be made dense. Received: gradient={gradient!r}"
        )
    return tf.math.unsorted_segment_sum(gradient.values, gradient.indices, rows)


def densify_all(grads, variables=None):
    """:func:`densify` for each gradient (with its variable where ``variables`` is given)."""
    if variables is None:
        return [densify(g) for g in grads]
    return [densify(g, v) for g, v in zip(grads, variables)]
