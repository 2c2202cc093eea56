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


@pytest.mark.parametrize("accumulation", [1, 2])
def test_overflow_lowers_the_loss_scale_as_in_fit(policy, accumulation):
    # Targets near 300 make the scaled float16 gradients overflow at the first steps:
    # the loss-scale optimizer skips those updates and halves its scale until they fit,
    # as it does in model.fit; the Trainer's on_nan policy is for non-finite losses.
    policy("mixed_float16")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (rng.normal(size=(64, 1)) * 300).astype("float32")

    def make():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"),
                                 keras.layers.Dense(1, dtype="float32")])

    reference = make()
    keras_accumulation = accumulation if accumulation > 1 else None  # Keras takes None or >= 2
    reference.compile(keras.optimizers.SGD(1e-6, gradient_accumulation_steps=keras_accumulation), "mse")
    expected = reference.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    model = make()
    trainer = Trainer(model, keras.optimizers.SGD(1e-6), "mse", jit_compile=False, shuffle=False,
                      gradient_accumulation_steps=accumulation)
    history = trainer.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    assert float(reference.optimizer.dynamic_scale) < 2.0 ** 15  # the data did overflow
    assert float(trainer.optimizer.dynamic_scale) == float(reference.optimizer.dynamic_scale)
    assert int(trainer.optimizer.iterations) == int(reference.optimizer.iterations) > 0
    assert trainer.skipped_steps == 0 and len(history["loss"]) == 3
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-5)
    for ours, theirs in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
