"""The skip contract in ``model.fit`` on the backend this process runs (the backend lane
runs it on JAX, under ``jit_compile=True``, and on PyTorch).

The same chain and assertions as ``test_skip_contract.py``'s TensorFlow paths:
``[<skip>, GradientNoise(0.0), AutoClip(50.0)]`` gets one ordinary step, then one to skip
(an infinite gradient for ``SkipNonFinite``, a gradient 1e6 times too large for
``SkipLargeUpdates``; the loss stays finite). On the skipped step the weights, the
optimizer's slots and step counter and the later transforms' state stay unchanged. The
bad gradient comes from ``keras.ops`` alone (no ``tf.custom_gradient``): a scalar weight
``s`` enters the output as a term that is 0 in value and whose gradient is infinite, or
1e6, only for the batch that carries a flag.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_trainkit.optimizers import AutoClip, GradientNoise, SkipLargeUpdates, SkipNonFinite, TransformedOptimizer
from tests.optimizers.skip_contract_checks import BatchRecorder, as_int, assert_skip_contract

BATCH = 8


class _BadGradientWhenFlagged(keras.layers.Layer):
    """``h`` plus a zero-valued term in a scalar weight ``s``: its gradient is infinite
    (``kind="non_finite"``) or 1e6 (``"large"``) for a batch whose ``x[:, 3]`` holds a flag
    (> 100), and 0 otherwise."""

    def __init__(self, kind, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind

    def build(self, input_shape):
        self.s = self.add_weight(shape=(), initializer="zeros", name="s")

    def call(self, h, x):
        flagged = ops.max(x[:, 3]) > 100.0
        s = ops.convert_to_tensor(self.s)
        zero_in_value = s - ops.stop_gradient(s)  # 0, with d/ds = 1
        if self.kind == "non_finite":
            scale = ops.where(flagged, 1e30, 0.0)  # d/ds = 1e60 * upstream: inf in float32
            term = scale * (scale * zero_in_value)
        else:
            term = ops.where(flagged, 1e6, 0.0) * zero_in_value
        return h + term


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * BATCH, 4)).astype("float32")
    y = rng.normal(size=(2 * BATCH, 1)).astype("float32")
    x[BATCH, 3] = 1000.0  # the second batch carries the flag
    return x, y


def _model(kind):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation="tanh")(inputs)
    return keras.Model(inputs, _BadGradientWhenFlagged(kind)(keras.layers.Dense(1)(hidden), inputs))


@pytest.mark.parametrize("kind", ["non_finite", "large"])
def test_transformed_optimizer_in_model_fit_skips_the_whole_step(kind):
    skip = (SkipNonFinite(max_consecutive=None) if kind == "non_finite"
            else SkipLargeUpdates(threshold=3.0, warmup_steps=1, max_consecutive=None))
    noise, clip = GradientNoise(0.0, seed=1), AutoClip(50.0, history_size=4)
    model = _model(kind)
    model.compile(TransformedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9), [skip, noise, clip]), "mse")
    recorder = BatchRecorder()
    history = model.fit(*_data(), batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])

    assert np.isfinite(history.history["loss"][0])
    assert as_int(skip.skipped_steps) == 1
    assert any(np.abs(s).max() > 0 for s in recorder.slots[0][1:]), "the first step should fill the momentum"
    assert_skip_contract([skip, noise, clip], recorder, model.optimizer)
