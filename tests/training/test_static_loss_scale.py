"""A static ``loss_scale_factor`` under the Trainer: accumulation and the transforms see the
loss's own gradients, as under ``fit``.

Keras's ``optimizer.scale_loss`` multiplies the loss by the optimizer's
``loss_scale_factor`` and ``optimizer.apply`` divides the gradients by it. The
Trainer took off only a ``LossScaleOptimizer``'s dynamic scale, so with a static
factor of 1024 its transforms saw gradients 1024 times too large: ClipByGlobalNorm(1.0)
clipped every step (the weights ended 11.5% off), GradientNoise was 1024 times weaker.
"""

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers.transforms import ClipByGlobalNorm, GradientNoise
from keras_trainkit.training import Trainer

TRANSFORMS = {"clip": lambda: ClipByGlobalNorm(1.0), "noise": lambda: GradientNoise(0.01, seed=3)}


def _train(transform, loss_scale_factor, accumulation):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 1)) * 3).astype("float32")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
    chain = [TRANSFORMS[transform]()]
    trainer = Trainer(model, keras.optimizers.Adam(0.01, loss_scale_factor=loss_scale_factor), "mse",
                      gradient_transforms=chain, gradient_accumulation_steps=accumulation, shuffle=False)
    trainer.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model.get_weights(), chain[0]


@pytest.mark.parametrize("accumulation", [1, 2])
@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_a_static_loss_scale_changes_nothing_the_transforms_see(transform, accumulation):
    plain, plain_transform = _train(transform, None, accumulation)
    scaled, scaled_transform = _train(transform, 1024.0, accumulation)  # a power of 2: exact
    for left, right in zip(scaled, plain, strict=True):
        np.testing.assert_allclose(left, right, rtol=1e-6, atol=1e-7)
    if transform == "clip":
        stats = {name: float(value) for name, value in scaled_transform.statistics.items()}
        expected = {name: float(value) for name, value in plain_transform.statistics.items()}
        # The last step's norm: above the threshold (clipping acts), far below 1024 times it.
        assert stats == pytest.approx(expected, rel=1e-6) and 1.0 < stats["grad_norm"] < 100.0
