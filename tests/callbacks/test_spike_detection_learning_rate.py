"""SpikeDetection's undo leaves a float learning rate as the callbacks that control it set it.

The undo copies held the optimizer's ``learning_rate`` variable, so a ``"restore"`` put back
the rate of the last good state: a ``ReduceLROnPlateau`` reduction or a
``LearningRateScheduler`` epoch rate made since was lost (the scheduler's, silently; the
plateau then raised, naming another scheduler). Under ``model.fit`` and the Trainer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_trainkit as tk
from keras_trainkit.training import Trainer

X = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
Y = X.sum(1, keepdims=True)
EPOCHS, STEPS, SPIKE_EPOCH, SPIKE_STEP = 4, 8, 2, 4


def batches():
    """``EPOCHS`` passes of 8 batches of 8; one batch of epoch ``SPIKE_EPOCH`` has targets x1000."""
    for epoch in range(EPOCHS):
        for step in range(STEPS):
            rows = slice(8 * step, 8 * step + 8)
            scale = 1e3 if (epoch, step) == (SPIKE_EPOCH, SPIKE_STEP) else 1.0
            yield X[rows], Y[rows] * scale


class RatesAtEpochEnds(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_epoch_end(self, epoch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate))


def train(path, controller):
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    data = tf.data.Dataset.from_generator(batches, output_signature=(
        tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None, 1), tf.float32)))
    spikes = tk.callbacks.SpikeDetection(policy="restore", snapshot_every=100, warmup=2)
    rates = RatesAtEpochEnds()
    callbacks = [controller, spikes, rates]
    if path == "fit":
        net.compile(keras.optimizers.SGD(0.01), "mse")
        history = net.fit(data, epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0, callbacks=callbacks)
    else:
        trainer = Trainer(net, keras.optimizers.SGD(0.01), "mse")
        history = trainer.fit(data, epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0, callbacks=callbacks)
    assert [(s["epoch"], s["step"]) for s in spikes.spikes] == [(SPIKE_EPOCH, SPIKE_STEP)]
    assert history.history["loss"][-1] < 100.0  # the spiking update (its loss ~2.5e6) was undone
    return rates.rates


@pytest.mark.parametrize("path", ["fit", "trainer"])
def test_a_restore_keeps_the_rate_a_scheduler_set(path):
    scheduler = keras.callbacks.LearningRateScheduler(lambda epoch: 0.01 * 0.5 ** epoch)
    rates = train(path, scheduler)
    np.testing.assert_allclose(rates, [0.01 * 0.5 ** epoch for epoch in range(EPOCHS)], rtol=1e-6)


@pytest.mark.parametrize("path", ["fit", "trainer"])
def test_a_restore_keeps_a_plateau_reduction(path):
    # min_delta so large that no epoch improves: a reduction at every epoch end after the first
    plateau = tk.callbacks.ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=1e9)
    rates = train(path, plateau)
    np.testing.assert_allclose(rates, [0.01, 0.005, 0.0025, 0.00125], rtol=1e-6)
