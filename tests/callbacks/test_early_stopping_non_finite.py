"""EarlyStopping(check_finite=True) catches NaN gradients with a finite loss (through the weights at the
epoch end) and restores weights *and* optimizer state, so the next fit on clean data trains."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.callbacks import EarlyStopping

BATCH = 8


class _NaNGradWhenFlagged(keras.layers.Layer):
    """Identity on ``h``; its gradient is NaN for a batch whose ``x[:, 0]`` holds a flag (> 100)."""

    def call(self, h, x):
        flagged = tf.reduce_max(x[:, 0]) > 100.0

        @tf.custom_gradient
        def ident(v):
            return v, lambda dy: dy * tf.where(flagged, np.nan, 1.0)

        return ident(h)


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = _NaNGradWhenFlagged()(keras.layers.Dense(1)(hidden), inputs)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def _data(flag_batch=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = rng.normal(size=(48, 1)).astype("float32")
    if flag_batch is not None:
        x[flag_batch * BATCH, 0] = 1000.0  # NaN gradients in that batch, its loss stays finite
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def _all_finite(variables):
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(v))) for v in variables)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("flag_batch, seen_in", [(5, "weights held NaN"), (3, "loss=nan at epoch 1")])
def test_nan_gradients_in_the_first_epoch_restore_weights_and_optimizer_state(flag_batch, seen_in, jit_compile):
    """Batch 5 (the last): only the weights show it, at the epoch end; batch 3: the next batch's loss."""
    model = _model()
    model.compile(keras.optimizers.Adam(0.01), "mse", jit_compile=jit_compile)
    start = [w.copy() for w in model.get_weights()]
    stop = EarlyStopping(monitor="loss", check_finite=True)
    model.fit(_data(flag_batch), epochs=3, verbose=0, callbacks=[stop])
    assert stop.stopped_reason == "non_finite" and seen_in in stop.stopped_message
    for a, b in zip(start, model.get_weights()):  # no check passed: the weights at the start
        np.testing.assert_array_equal(a, b)
    assert _all_finite(model.optimizer.variables)  # Adam's slots were NaN after batch 3
    again = model.fit(_data(), epochs=1, verbose=0)
    assert np.isfinite(again.history["loss"][0])
    assert _all_finite(model.trainable_variables)
