"""The XLA-compiled Trainer step (``jit_compile=True``): its optimization barrier and results.

Under XLA the gradients reach the update (under the NaN policy's ``tf.cond``)
through an XLA optimization barrier; without it Grappler sank the weight-gradient
convolutions into the conditional, where XLA:CPU runs them as naive loops (see
docs/custom_loop.md, "Speed"). These tests check the barrier is there and that it
changes no result.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_trainkit.training import Trainer
from keras_trainkit.training.epoch_plan import prepare_inputs

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def conv_data(n=48, length=12, classes=3):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, length)).astype("float32"), rng.integers(0, classes, size=n)


def conv_model(length=12, classes=3):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((length,))
    x = keras.layers.Reshape((length, 1))(inputs)
    x = keras.layers.Conv1D(4, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Conv1D(4, 3, strides=2, padding="same")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


def compiled_op_types(trainer, x, y):
    """The op types in the XLA-compiled functions the training function calls."""
    dataset, _ = prepare_inputs(x, y, None, 8, trainer.model, shuffle=False, seed=None)
    graph = trainer._functions.train_function.get_concrete_function(
        iter(dataset), tf.TensorSpec([], tf.int32)).graph
    types = set()
    for function in graph.as_graph_def().library.function:
        attr = function.attr.get("_XlaMustCompile")
        if attr is not None and attr.b:
            types.update(node.op for node in function.node_def)
    return types


def test_xla_step_pins_the_gradients_and_matches_the_plain_step():
    x, y = conv_data()
    weights, losses = {}, {}
    for jit in (False, True):
        model = conv_model()
        trainer = Trainer(model, keras.optimizers.Adam(1e-3), SCE, ["accuracy"], jit_compile=jit,
                          steps_per_execution=2, shuffle=False)
        history = trainer.fit(x, y, batch_size=8, epochs=2, verbose=0)
        weights[jit], losses[jit] = model.get_weights(), history.history["loss"]
        if jit:
            types = compiled_op_types(trainer, x, y)
            assert "Conv2DBackpropFilter" in types and "XlaOptimizationBarrier" in types, types
    for a, b in zip(weights[False], weights[True]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(losses[False], losses[True], rtol=1e-5)
