"""Mixed precision: mixed_float16 uses dynamic loss scaling, mixed_bfloat16 trains as is."""

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers.transforms import ClipByGlobalNorm
from keras_trainkit.training import Trainer


@pytest.fixture
def policy():
    previous = keras.config.dtype_policy()
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("name", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains(policy, name):
    policy(name)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, size=64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, dtype="float32")])
    clip = ClipByGlobalNorm(10.0)
    trainer = Trainer(model, keras.optimizers.Adam(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"],
                      jit_compile=False, gradient_accumulation_steps=2, gradient_transforms=[clip])
    history = trainer.fit(x, y, batch_size=8, epochs=4, verbose=0)
    assert model.layers[0].compute_dtype == name.split("_")[1]
    is_scaled = isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_scaled == (name == "mixed_float16")
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert int(trainer.optimizer.iterations) == 16
    # The transforms saw unscaled gradients: a norm of order 1, not of the loss scale (2**15).
    assert 0.0 < float(clip.statistics["grad_norm"]) < 100.0
