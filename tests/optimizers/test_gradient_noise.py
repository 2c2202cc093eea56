"""GradientNoise's sampler: exact N(0, sigma_t^2), fresh every step, with and without XLA, in fit.

The statistics are checked against scipy (Kolmogorov-Smirnov against the
standard normal CDF), not against another sampler, and each check is shown to
reject a wrong distribution (variance-matched uniform noise) and noise reused
across steps, so it can fail.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.optimizers import GradientNoise, TransformedOptimizer
from tests.conftest import LOGICAL_CPUS
from tests.optimizers.gaussian_checks import (
    ETA,
    GAMMA,
    SHAPES,
    assert_step_noise,
    gaussian_problems,
    scheduled_sigma,
    uncorrelated,
)


def test_checks_reject_wrong_noise():
    """The checks below can fail: uniform noise of the same variance, and noise reused across steps."""
    rng = np.random.default_rng(0)
    n = sum(int(np.prod(s)) for s in SHAPES)
    assert gaussian_problems(rng.normal(size=n)) == []
    uniform = rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), size=n)
    assert any("KS" in p for p in gaussian_problems(uniform))
    r = np.sqrt(-2 * np.log(1 - rng.uniform(size=n // 2)))
    theta = 2 * np.pi * rng.uniform(size=n // 2)
    assert gaussian_problems(np.concatenate([r * np.cos(theta), r * np.sin(theta)])) == []
    assert gaussian_problems(np.concatenate([r * np.cos(theta), r * np.cos(theta)])) == ["halves correlated"]
    z = rng.normal(size=n)
    assert not uncorrelated(z, z) and not uncorrelated(z, -z) and uncorrelated(z, rng.normal(size=n))


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_noise_is_gaussian_with_scheduled_std_and_fresh_every_step(jit_compile):
    noise = GradientNoise(ETA, GAMMA, seed=11)
    variables = [keras.Variable(np.zeros(s, "float32")) for s in SHAPES]
    zeros = [tf.zeros(s) for s in SHAPES]
    step = tf.function(lambda: noise(zeros, variables), jit_compile=jit_compile)
    previous = None
    for t in range(3):
        big, small = (np.asarray(x, "float64").ravel() for x in step())
        previous = assert_step_noise(t, big, small, previous)
        np.testing.assert_allclose(noise.get_statistics()["noise_std"], scheduled_sigma(t), rtol=1e-6)
    # Each gradient tensor gets its own draw: the (7,) tensor is not a copy of the big one's start.
    first = np.asarray(step()[1])
    assert not np.allclose(first, np.asarray(step()[0]).ravel()[:7])


def test_seeded_runs_repeat_with_and_without_xla():
    def run(jit_compile):
        noise = GradientNoise(0.1, seed=4)
        w = [keras.Variable(np.zeros((5, 3), "float32"))]
        step = tf.function(lambda: noise([tf.zeros((5, 3))], w), jit_compile=jit_compile)
        return [np.asarray(step()[0]) for _ in range(3)]

    for jit_compile in (False, True):
        a, b = run(jit_compile), run(jit_compile)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        assert not np.allclose(a[0], a[1])


def _data(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x @ rng.normal(size=(4, 1))).astype("float32")


def _model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(hidden))


def _noisy_sgd():
    return TransformedOptimizer(keras.optimizers.SGD(0.05), [GradientNoise(0.01, seed=5)])


def test_fit_under_mirrored_strategy_matches_one_device(two_cpu_strategy):
    x, y = _data()

    def run(strategy):
        with strategy.scope():
            model = _model()
            model.compile(_noisy_sgd(), "mse", jit_compile=False)
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    single = run(tf.distribute.OneDeviceStrategy(LOGICAL_CPUS[0]))
    for a, b in zip(single, run(two_cpu_strategy)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("policy, jit_compile", [("float32", True), ("mixed_float16", False)])
def test_fit_is_seeded_and_noisy(policy, jit_compile):
    """XLA and mixed_float16 fits: finite, reproducible from the seed, and the noise moves the weights."""
    x, y = _data()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        runs = []
        for optimizer in (_noisy_sgd(), _noisy_sgd(), keras.optimizers.SGD(0.05)):
            model = _model()
            model.compile(optimizer, "mse", jit_compile=jit_compile)
            history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
            assert np.all(np.isfinite(history.history["loss"]))
            runs.append(model.get_weights())
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(a - c).max() > 1e-4 for a, c in zip(runs[0], runs[2]))
