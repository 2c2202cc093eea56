"""``SpikeDetection``'s undo on a model whose optimizer ``fit`` has not built yet.

``model.fit`` builds the optimizer inside its first step, after
``on_train_begin``. Before, the callback's copies taken before that held no
optimizer slots: undoing a spike put back the weights and the step count but
left the undone batches' values in the slots (Adam's moments off by up to 114,
the weights 0.11 from the twin two epochs later), and a non-finite first batch
left NaN slots that turned the weights NaN. The callback now builds the
optimizer first. Twin: the same model trained on the batches that survive.
"""

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import SpikeDetection
from keras_trainkit.optimizers import TransformedOptimizer
from keras_trainkit.optimizers.transforms import AutoClip

OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1e-2),
    "transformed_autoclip": lambda: TransformedOptimizer(keras.optimizers.Adam(1e-2), [AutoClip(percentile=50)]),
}


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    return x, (x @ rng.normal(size=(8, 1))).astype("float32")


def _model(optimizer):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.compile(OPTIMIZERS[optimizer](), "mse")
    return model


def _assert_same_state(model, twin):
    for left, right in zip(model.get_weights() + [np.asarray(v) for v in model.optimizer.variables],
                           twin.get_weights() + [np.asarray(v) for v in twin.optimizer.variables], strict=True):
        np.testing.assert_allclose(left, right, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_restoring_before_the_first_snapshot_puts_back_the_optimizer_slots_too(optimizer):
    x, y = _data()
    spiking = y.copy()
    spiking[32:48] = spiking[32:48] * 100 + 50  # batch 2 of 4 spikes
    model, twin = _model(optimizer), _model(optimizer)
    detector = SpikeDetection(policy="restore", warmup=2)  # the only copy: the one at the start
    model.fit(x, spiking, batch_size=16, shuffle=False, verbose=0, callbacks=[detector])
    assert [(s["epoch"], s["step"]) for s in detector.spikes] == [(0, 2)]
    twin.fit(x[48:], y[48:], batch_size=16, shuffle=False, verbose=0)  # batches 0-2 were undone
    _assert_same_state(model, twin)


@pytest.mark.parametrize("policy", ["skip", "restore"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_a_non_finite_first_batch_is_undone_without_leaving_nan_in_the_slots(optimizer, policy):
    x, y = _data()
    broken = y.copy()
    broken[3, 0] = np.inf  # batch 0's loss is non-finite
    model, twin = _model(optimizer), _model(optimizer)
    detector = SpikeDetection(policy=policy, warmup=2)
    model.fit(x, broken, batch_size=16, shuffle=False, verbose=0, callbacks=[detector])
    assert [(s["epoch"], s["step"]) for s in detector.spikes] == [(0, 0)]
    twin.fit(x[16:], y[16:], batch_size=16, shuffle=False, verbose=0)
    _assert_same_state(model, twin)
