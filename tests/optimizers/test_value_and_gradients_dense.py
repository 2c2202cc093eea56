"""value_and_gradients on TensorFlow: gradients of a gather come back dense, rows of one index summed.

The reference is a numpy transcription: the gradient of ``sum(E[ids] * w)``
with respect to ``E`` is ``w`` added once per occurrence of each id (zero for
ids never looked up). Before the fix TensorFlow's ``tf.IndexedSlices`` came
back as is, one row per look-up: ``np.asarray`` of it is a 0-d object array and
``ops.square`` squares the rows before they are summed.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_trainkit.utils.gradients import value_and_gradients


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.IndexedSlices are TensorFlow's")
def test_embedding_gradient_is_dense_with_repeated_rows_summed():
    embedding = keras.layers.Embedding(5, 2)
    embedding.build((None,))
    w = keras.Variable(np.array([0.1, -0.3], "float32"))
    ids = np.array([1, 1, 3, 1], "int32")
    _, _, (grad_table, grad_w) = value_and_gradients(
        lambda: (ops.sum(embedding(ids) * w), None), [embedding.embeddings, w])
    expected = np.zeros((5, 2))
    np.add.at(expected, ids, np.array([0.1, -0.3]))
    assert tuple(grad_table.shape) == (5, 2)
    np.testing.assert_allclose(np.asarray(grad_table), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ops.square(grad_table)), expected**2, rtol=1e-6)
    table = keras.ops.convert_to_numpy(embedding.embeddings)
    np.testing.assert_allclose(np.asarray(grad_w), table[ids].sum(axis=0), rtol=1e-6)
