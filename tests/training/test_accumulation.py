"""Gradient accumulation: k micro-batches of b equal one batch of k*b; schedules count updates."""

import keras
import numpy as np
import tensorflow as tf

from keras_trainkit.training import Trainer


def model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="tanh"),
                             keras.layers.Dense(3)])


def train(batch_size, k, epochs=3, steps_per_execution=1):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 5)).astype("float32")
    y = rng.integers(0, 3, size=96)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.8)
    net = model()
    trainer = Trainer(net, keras.optimizers.Adam(schedule),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=False, shuffle=False, gradient_accumulation_steps=k,
                      steps_per_execution=steps_per_execution)
    history = trainer.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return net, history


def test_k_micro_batches_equal_one_big_batch():
    big, big_history = train(batch_size=32, k=1)
    small, small_history = train(batch_size=8, k=4, steps_per_execution=3)
    # 96 / 32 = 3 updates per epoch either way; the decaying schedule would
    # diverge at once if it counted micro-batches.
    assert int(big.optimizer.iterations) == int(small.optimizer.iterations) == 9
    for a, b in zip(big.get_weights(), small.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(big_history.history["loss"], small_history.history["loss"],
                               rtol=1e-5)


def test_partial_accumulation_carries_over_epochs():
    net, _ = train(batch_size=32, k=2, epochs=1)  # 3 micro-batches: 1 update + 1 pending
    assert int(net.optimizer.iterations) == 1
    rng = np.random.default_rng(2)
    ds = tf.data.Dataset.from_tensor_slices(
        (rng.normal(size=(32, 5)).astype("float32"), rng.integers(0, 3, size=32))).batch(32)
    trainer = Trainer.from_compiled(net, jit_compile=False, gradient_accumulation_steps=2)
    trainer.fit(ds, epochs=2, verbose=0)
    assert int(net.optimizer.iterations) == 2
