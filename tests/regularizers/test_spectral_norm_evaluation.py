"""``SpectralNorm``'s power-iteration vector ``u`` advances in training steps only.

Before, every computation of the penalty advanced ``u``, evaluations too: one
``model.evaluate`` moved it by 0.06, and a model trained with validation data
ended 5e-4 from one trained without (4e-4 under the Trainer), though validation
must not change training (``keras.layers.SpectralNormalization`` advances its
vector only with ``training=True``).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.regularizers import SpectralNorm, state_variables
from keras_trainkit.training import Trainer


def _data(count, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 6)).astype("float32")
    return x, (x @ rng.normal(size=(6, 2))).astype("float32")


def _model():
    keras.utils.set_random_seed(3)
    # Named model and layers: u's start vector is drawn from its weight's path, the same in every twin.
    return keras.Sequential([keras.Input((6,)),
                             keras.layers.Dense(12, activation="tanh", kernel_regularizer=SpectralNorm(0.1),
                                                name="hidden"),
                             keras.layers.Dense(2, kernel_regularizer=SpectralNorm(0.1), name="out")],
                            name="twin")


def _u(model):
    return [keras.ops.convert_to_numpy(u) for u in state_variables(model)]


def test_an_eager_call_outside_a_tape_leaves_u_and_one_under_a_tape_advances_it():
    regularizer = SpectralNorm(1.0, squared=False)
    kernel = keras.Variable(np.random.default_rng(0).normal(size=(7, 4)).astype("float32"), name="kernel")
    first = float(regularizer(kernel))  # makes u, from its start vector
    u = keras.ops.convert_to_numpy(regularizer.state_variables(kernel)[0])
    assert float(regularizer(kernel)) == first
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(regularizer.state_variables(kernel)[0]), u)
    with tf.GradientTape():
        regularizer(kernel)
    assert np.max(np.abs(keras.ops.convert_to_numpy(regularizer.state_variables(kernel)[0]) - u)) > 1e-3


def test_model_evaluate_leaves_u_as_it_was():
    model = _model()
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x, y = _data(64, 0)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    before = _u(model)
    model.evaluate(*_data(32, 5), verbose=0)
    for left, right in zip(_u(model), before, strict=True):
        np.testing.assert_array_equal(left, right)


@pytest.mark.parametrize("loop", ["fit", "trainer"])
def test_training_with_validation_equals_training_without(loop):
    x, y = _data(64, 0)
    finals = []
    for validation in (_data(32, 5), None):
        model = _model()
        if loop == "fit":
            model.compile(keras.optimizers.Adam(1e-2), "mse")
            model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, validation_data=validation)
        else:
            Trainer(model, keras.optimizers.Adam(1e-2), "mse", shuffle=False).fit(
                x, y, batch_size=16, epochs=3, verbose=0, validation_data=validation)
        finals.append(model.get_weights() + _u(model))
    for with_validation, without in zip(*finals, strict=True):
        np.testing.assert_array_equal(with_validation, without)
