"""A NaN loss during the warmup is a spike (it needs no window).

Before, a NaN batch in the warmup was left in place: its update made the weights NaN, every
later loss NaN, the warmup never ended and no spike was ever reported ("skip" recorded [], the
weights ended NaN)."""

import math

import numpy as np
import keras

from keras_trainkit.callbacks import SpikeDetection


def _rule(losses, window, warmup, atol, rtol):
    """The docstring's rule in numpy: NaN/Inf always; else, after ``warmup`` good losses,
    ``L > last`` and ``L - mean >= atol`` and ``L - mean >= rtol |mean|``."""
    recent, last, spikes = [], math.inf, []
    for i, loss in enumerate(losses):
        if not math.isfinite(loss):
            spike = True
        elif len(recent) >= warmup and loss > last:
            mean = np.mean(recent[-window:])
            spike = (atol is None or loss - mean >= atol) and (rtol is None or loss - mean >= rtol * abs(mean))
        else:
            spike = False
        if spike:
            spikes.append(i)
        else:
            recent.append(loss)
            last = loss
    return spikes


def test_a_nan_in_the_warmup_is_skipped_and_later_spikes_are_found():
    losses = [math.nan, 1.0, 1.0, 5.0, 1.0]
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(keras.optimizers.SGD(0.0), "mse")  # batch i's loss is y_i^2 while the weights stay
    callback = SpikeDetection(policy="skip", warmup=1, max_consecutive=None)
    y = np.sqrt(np.asarray(losses)).astype("float32")[:, None]
    model.fit(np.ones((len(y), 1), "float32"), y, batch_size=1, shuffle=False, verbose=0, callbacks=[callback])
    assert [s["step"] for s in callback.spikes] == _rule(losses, 10, 1, None, 2.0) == [0, 3]
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert callback.spikes[1]["loss"] == 5.0


def test_a_nan_first_batch_stops_training_with_the_stop_policy():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    callback = SpikeDetection(policy="stop", warmup=3)
    y = np.array([[math.nan], [1.0], [1.0], [1.0]], "float32")
    history = model.fit(np.ones((4, 1), "float32"), y, batch_size=1, epochs=2, shuffle=False, verbose=0,
                        callbacks=[callback])
    assert [(s["epoch"], s["step"]) for s in callback.spikes] == [(0, 0)]
    assert len(history.epoch) == 1
