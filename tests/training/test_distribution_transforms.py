"""Gradient transforms under a ``MirroredStrategy`` see the all-reduced gradient, as one device does.

Clipping each replica's partial gradient before the all-reduce would clip at another
threshold than one device, with no error. The contract on each path that runs a
transform: ``TransformedOptimizer`` under ``model.fit``, the ``GradientClipping``
callback, and the Trainer's ``gradient_transforms``: the same weights and the same
statistics (norms, clip fractions) as on one device.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.callbacks import GradientClipping
from keras_trainkit.optimizers import TransformedOptimizer
from keras_trainkit.optimizers.transforms import AutoClip, ClipByGlobalNorm
from keras_trainkit.training import Trainer

TRANSFORMS = {"global_norm": lambda: ClipByGlobalNorm(0.5), "autoclip": lambda: AutoClip(10)}


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, (x @ rng.normal(size=(4, 1)) * 4).astype("float32")  # large gradients: clipping acts


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])


def _train(strategy, path, transform):
    x, y = _data()
    with strategy.scope():
        model = _model()
        if path == "trainer":
            chain = [TRANSFORMS[transform]()]
            Trainer(model, keras.optimizers.Adam(0.05), "mse", gradient_transforms=chain, shuffle=False, jit_compile=False,
                    strategy=strategy).fit(x, y, batch_size=16, epochs=2, verbose=0)
            return model.get_weights(), chain[0].statistics
        if path == "transformed_optimizer":
            chain = [TRANSFORMS[transform]()]
            model.compile(TransformedOptimizer(keras.optimizers.Adam(0.05), chain), "mse")
            model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
            return model.get_weights(), chain[0].statistics
        model.compile(keras.optimizers.Adam(0.05), "mse")
        clipping = GradientClipping(transform, **({"max_norm": 0.5} if transform == "global_norm" else {}))
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[clipping])
        return model.get_weights(), {"grad_norm": history.history["grad_norm"][-1],
                                     "clip_fraction": history.history["clip_fraction"][-1]}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("path", ["trainer", "transformed_optimizer", "callback"])
def test_two_replicas_clip_as_one_device_does(two_cpu_strategy, path, transform):
    one, one_stats = _train(tf.distribute.OneDeviceStrategy("/cpu:0"), path, transform)
    two, two_stats = _train(two_cpu_strategy, path, transform)
    for left, right in zip(two, one, strict=True):
        np.testing.assert_allclose(left, right, atol=1e-5)
    one_stats = {name: float(np.asarray(value)) for name, value in one_stats.items()}
    two_stats = {name: float(np.asarray(value)) for name, value in two_stats.items()}
    assert two_stats == pytest.approx(one_stats, rel=1e-5)
    assert one_stats["clip_fraction"] > 0.0  # the threshold clipped: a per-replica clip would show
