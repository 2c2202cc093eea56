"""TrainkitCallback.on_first_epoch_begin: once per fit, at the epoch the fit starts at, under
model.fit and the Trainer (GradientClipping, ReduceLROnPlateau and SWA do their resume
checks there)."""

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks._monitor import TrainkitCallback
from keras_trainkit.training import Trainer

X = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
Y = X.sum(1, keepdims=True)


class FirstEpochs(TrainkitCallback):
    """Records each first epoch, and every epoch through an ``on_epoch_begin`` override."""

    def __init__(self):
        super().__init__()
        self.first_epochs, self.epochs = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)
        super().on_epoch_begin(epoch, logs)

    def on_first_epoch_begin(self, epoch):
        self.first_epochs.append(epoch)


def two_fits(path):
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    if path == "fit":
        net.compile(optimizer="sgd", loss="mse")
    fit = net.fit if path == "fit" else Trainer(net, keras.optimizers.SGD(), "mse").fit
    callback = FirstEpochs()
    fit(X, Y, epochs=2, verbose=0, callbacks=[callback])
    fit(X, Y, epochs=5, initial_epoch=3, verbose=0, callbacks=[callback])
    return callback


@pytest.mark.parametrize("path", ["fit", "trainer"])
def test_the_hook_runs_once_per_fit_at_its_first_epoch(path):
    callback = two_fits(path)
    assert callback.epochs == [0, 1, 3, 4]
    assert callback.first_epochs == [0, 3]
