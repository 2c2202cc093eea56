"""The dense form of a gradient, for the optimizers whose update needs whole tensors.

TensorFlow hands an embedding lookup's gradient over as ``tf.IndexedSlices``:
rows may repeat (their values are to be summed) and rows left out are zero.
Keras's element-wise ops on such a gradient act on each slice separately, so
a nonlinear term (``g**2``, a sign, a norm) of a repeated row comes out wrong,
and a reshape fails. :func:`dense_gradient` sums the slices into the full
tensor first (``segment_sum``); a dense gradient is returned as it is. Other
backends only produce dense gradients.
"""

from __future__ import annotations

from keras import ops


def dense_gradient(gradient, variable):
    """``gradient`` as a dense tensor of ``variable``'s shape (sliced rows summed)."""
    indices = getattr(gradient, "indices", None)
    values = getattr(gradient, "values", None)
    if indices is None or values is None:
        return gradient
    return ops.segment_sum(values, indices, num_segments=variable.shape[0])
