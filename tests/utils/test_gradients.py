"""``utils.gradients.value_and_gradients`` (on JAX and PyTorch through tests/diagnostics/test_backends.py)."""

import keras
import numpy as np
import pytest

from keras_trainkit.utils.gradients import value_and_gradients


def test_gradients_of_trainable_non_trainable_and_unused_variables():
    w = keras.Variable([1.0, -2.0])
    frozen = keras.Variable([3.0], trainable=False)
    unused = keras.Variable(np.ones((2, 2), "float32"))
    value, aux, grads = value_and_gradients(
        lambda: (keras.ops.sum(w * w) + 0.5 * keras.ops.sum(frozen * frozen), w * 2.0), [w, frozen, unused])
    assert float(value) == pytest.approx(9.5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(aux), [2.0, -4.0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(grads[0]), [2.0, -4.0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(grads[1]), [3.0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(grads[2]), np.zeros((2, 2)))


def test_nothing_is_assigned_during_the_pass():
    layer = keras.layers.BatchNormalization()
    layer.build((None, 3))
    x = np.random.default_rng(0).normal(5.0, 2.0, size=(16, 3)).astype("float32")
    before = keras.ops.convert_to_numpy(layer.moving_mean)
    _, _, grads = value_and_gradients(lambda: (keras.ops.sum(layer(x, training=True) * x), None),
                                      layer.trainable_variables)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.moving_mean), before)
    assert len(grads) == 2 and all(np.all(np.isfinite(keras.ops.convert_to_numpy(g))) for g in grads)


def test_bad_arguments_name_themselves():
    with pytest.raises(TypeError, match="Argument `fn` must be callable"):
        value_and_gradients(1.0, [])
    with pytest.raises(TypeError, match="Argument `variables` must be a list of keras.Variable"):
        value_and_gradients(lambda: (0.0, None), [np.ones(2)])
