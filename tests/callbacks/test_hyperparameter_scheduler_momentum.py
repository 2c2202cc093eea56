"""A scheduled ``SGD`` momentum that is 0 for a while.

Keras's ``SGD`` keeps momentum slots only when built with ``momentum != 0`` and
picks the plain update when its step is traced with momentum 0. Reference: the
heavy-ball rule in NumPy, ``v <- mu_t v - lr g_t``, ``w <- w + v`` with
``mu_t = schedule(t)`` (Polyak 1964; Keras's SGD docstring).
"""

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import HyperparameterScheduler
from keras_trainkit.training import Trainer

LR, BATCH = 0.05, 8


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    return x, rng.normal(size=(32, 1)).astype("float32")


def _momentum_schedule(step):
    return 0.0 if step < 2 else 0.9


def _numpy_heavy_ball(w, x, y, momentum_of, epochs=2):
    w, v, t = w.astype(np.float64), np.zeros(w.shape), 0
    for _ in range(epochs):
        for i in range(0, len(x), BATCH):
            xb, yb = x[i:i + BATCH].astype(np.float64), y[i:i + BATCH].astype(np.float64)
            g = 2.0 * xb.T @ (xb @ w - yb) / len(xb)
            v = momentum_of(t) * v - LR * g
            w, t = w + v, t + 1
    return w


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])


@pytest.mark.parametrize("path", ["fit", "trainer"])
def test_momentum_scheduled_from_zero_follows_the_heavy_ball_rule(path):
    x, y = _data()
    model, optimizer = _model(), keras.optimizers.SGD(LR, momentum=0.5)
    expected = _numpy_heavy_ball(model.layers[0].kernel.numpy(), x, y, _momentum_schedule)
    callback = HyperparameterScheduler("momentum", _momentum_schedule)
    if path == "fit":
        model.compile(optimizer, "mse")
        model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[callback])
    else:
        Trainer(model, optimizer, "mse", shuffle=False).fit(x, y, batch_size=BATCH, epochs=2, verbose=0,
                                                            callbacks=[callback])
    # old code: the step traced at momentum 0 kept the plain update, off by 0.49
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), expected, atol=1e-5)


def test_sgd_built_without_momentum_is_refused():
    x, y = _data()
    model = _model()
    model.compile(keras.optimizers.SGD(LR, momentum=0.0), "mse")
    w0 = model.layers[0].kernel.numpy()
    # old code: trained without momentum, silently (0.49 from the heavy-ball reference)
    with pytest.raises(ValueError, match=r"momentum=0\b.*no momentum slots.*hyperparameter='momentum'"):
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
                  callbacks=[HyperparameterScheduler("momentum", _momentum_schedule)])
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), w0)  # refused before any step
