"""``GradientClipping("autoclip")`` keeps AutoClip's history of norms from one ``fit`` to the next.

AutoClip (Seetharaman et al. 2020) clips the global gradient norm at the
``p``-th percentile of all norms seen so far. Reference: a NumPy transcription
of SGD with AutoClip over the concatenated steps of two ``fit`` calls (and
``TransformedOptimizer([AutoClip])``, which keeps its state in the optimizer).
"""

import keras
import numpy as np

from keras_trainkit.callbacks import GradientClipping
from tests.callbacks.linear_reference import two_layer_mse_gradients

BATCH, LR, PERCENTILE = 8, 0.05, 10.0


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    return x, (rng.normal(size=(32, 2)) * 5).astype("float32")


def _numpy_autoclip_sgd(weights, x, y, epochs):
    """SGD on a two-layer linear model, the global norm clipped at the running percentile."""
    weights, norms = [w.astype(np.float64) for w in weights], []
    for _ in range(epochs):
        for i in range(0, len(x), BATCH):
            grads = two_layer_mse_gradients(weights, x[i:i + BATCH], y[i:i + BATCH])
            norm = np.sqrt(sum(float((g ** 2).sum()) for g in grads))
            norms.append(norm)
            scale = min(1.0, np.percentile(norms, PERCENTILE) / norm)
            weights = [w - LR * scale * g for w, g in zip(weights, grads)]
    return weights


def test_autoclip_history_carries_over_to_the_next_fit():
    x, y = _data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(LR), "mse")
    expected = _numpy_autoclip_sgd([v.numpy() for v in model.trainable_variables], x, y, epochs=2)
    clip = GradientClipping("autoclip", percentile=PERCENTILE)
    for _ in range(2):
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[clip])
    for variable, reference in zip(model.trainable_variables, expected):
        # old code (history restarted by the second fit): off by 1.5e-2
        np.testing.assert_allclose(variable.numpy(), reference, atol=1e-5)
