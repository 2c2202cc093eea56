"""``lr_find`` on ``(x, y, sample_weight)`` arrays weights the loss like ``model.fit``."""

import numpy as np
import keras

from keras_trainkit.diagnostics import lr_find


def test_sample_weights_of_array_data_weight_the_recorded_loss():
    """Reference: Keras's "sum_over_batch_size" reduction, ``mean_i(w_i * (x_i W + b - y_i)^2)``,
    in float64 numpy at the initial weights (step 0's loss is taken before any update).
    The sample weights used to be dropped: 4.2102 recorded against 1.6476."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = x.sum(1, keepdims=True)
    weights = np.where(np.arange(64) % 2 == 0, 1.0, 0.0).astype("float32")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    result = lr_find(model, (x, y, weights), start_lr=1e-6, end_lr=1e-5, num_steps=3, batch_size=64)
    squared = ((x @ kernel + bias - y) ** 2)[:, 0]
    np.testing.assert_allclose(result.losses[0], np.mean(weights * squared), rtol=1e-5)
    assert abs(result.losses[0] - np.mean(squared)) > 1.0
