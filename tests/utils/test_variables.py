"""One rule for what a variable is called (keras_trainkit.utils.variables.variable_path)."""

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers import LayerwiseLearningRate
from keras_trainkit.utils.variables import variable_path


def test_a_keras_variable_is_called_by_its_path():
    layer = keras.layers.Dense(2, name="head")
    layer.build((None, 3))
    assert variable_path(layer.kernel) == "head/kernel"


def test_a_tensorflow_variable_is_called_by_its_name_without_the_output_suffix():
    tf = pytest.importorskip("tensorflow")
    variable = tf.Variable(np.ones(3, "float32"), name="dense/kernel")
    assert variable.name == "dense/kernel:0"
    assert variable_path(variable) == "dense/kernel"


def test_a_layerwise_pattern_matches_a_tensorflow_variable_by_its_path():
    # Before one rule, LayerwiseLearningRate matched "dense/kernel:0": the exact pattern
    # missed and the update kept factor 1 (weights 0.9 instead of 0.95).
    tf = pytest.importorskip("tensorflow")
    variable = tf.Variable(np.ones(3, "float32"), name="dense/kernel")
    optimizer = LayerwiseLearningRate(keras.optimizers.SGD(0.1), {"dense/kernel": 0.5})
    optimizer.apply_gradients([(tf.ones(3), variable)])
    np.testing.assert_allclose(variable.numpy(), [0.95, 0.95, 0.95], rtol=1e-6)
