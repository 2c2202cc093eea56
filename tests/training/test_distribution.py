"""MirroredStrategy over the two logical CPU devices gives the weights of one device."""

import keras
import numpy as np
import tensorflow as tf

from keras_trainkit.training import Trainer


def train(strategy, k=1):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.integers(0, 3, size=64)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
                                  keras.layers.Dense(3)])
        trainer = Trainer(model, keras.optimizers.Adam(0.05),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          ["accuracy"], shuffle=False, strategy=strategy,
                          gradient_accumulation_steps=k, steps_per_execution=2)
    history = trainer.fit(x, y, batch_size=16, epochs=2, verbose=0)
    return model.get_weights(), history.history, trainer


def test_mirrored_two_cpus_equals_one_device(two_cpu_strategy):
    one, one_logs, _ = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
    two, two_logs, trainer = train(two_cpu_strategy)
    assert trainer.strategy.num_replicas_in_sync == 2
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(one_logs["loss"], two_logs["loss"], rtol=1e-5)
    np.testing.assert_allclose(one_logs["accuracy"], two_logs["accuracy"], rtol=1e-6)


def test_mirrored_with_gradient_accumulation(two_cpu_strategy):
    one, _, _ = train(tf.distribute.OneDeviceStrategy("/cpu:0"), k=2)
    two, _, trainer = train(two_cpu_strategy, k=2)
    assert int(trainer.optimizer.iterations.numpy()) == 4
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, atol=1e-5)
