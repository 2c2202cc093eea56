"""GradientAccumulator: the mean of k micro-batch gradients, against float64 numpy and optax.MultiSteps.

The mean of float16 / bfloat16 gradients must be their exact mean rounded once
(as optax.MultiSteps averages them), not a float16 sum that overflows where the
mean does not, nor k roundings of a bfloat16 running sum.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_trainkit.training.accumulation import GradientAccumulator  # noqa: E402


def _accumulate(grads_per_step, variables, k):
    accumulator = GradientAccumulator(k)
    accumulator.build(variables, tf.distribute.get_strategy())
    applied = []
    for grads in grads_per_step:
        accumulator.add(grads, applied.append)
    return accumulator, applied


def test_float16_mean_does_not_overflow_in_the_sum():
    variable = keras.Variable(np.zeros(2), dtype="float16")
    steps = [[tf.constant([30000.0, 1.0], tf.float16)] for _ in range(4)]
    _, applied = _accumulate(steps, [variable], 4)
    [[mean]] = applied
    assert mean.dtype == tf.float16
    np.testing.assert_array_equal(mean.numpy(), np.array([30000.0, 1.0], "float16"))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_mean_is_the_exact_mean_rounded_once(dtype):
    rng = np.random.default_rng(0)
    k = 16
    variable = keras.Variable(np.zeros(1000), dtype=dtype)
    steps = [[tf.cast(rng.normal(loc=3.0, size=1000), dtype)] for _ in range(k)]
    _, applied = _accumulate(steps, [variable], k)
    [[mean]] = applied
    exact = np.mean([tf.cast(g, tf.float64).numpy() for [g] in steps], axis=0)
    rounded_once = tf.cast(tf.cast(exact, dtype), tf.float64).numpy()
    np.testing.assert_array_equal(tf.cast(mean, tf.float64).numpy(), rounded_once)


def test_sparse_and_dense_micro_batches_match_optax_multisteps():
    """Repeated and absent rows of tf.IndexedSlices count as their sum, over 3 updates of k=4."""
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(1)
    k, updates = 4, 3
    table = keras.Variable(np.zeros((6, 2), "float32"))
    dense = keras.Variable(np.zeros(3, "float32"))
    steps, reference_steps = [], []
    for _ in range(k * updates):
        indices = rng.integers(0, 4, size=5)  # rows 4 and 5 never appear; repeats are common
        values = rng.normal(size=(5, 2)).astype("float32")
        d = rng.normal(size=3).astype("float32")
        steps.append([tf.IndexedSlices(tf.constant(values), tf.constant(indices), tf.constant([6, 2])),
                      tf.constant(d)])
        summed = np.zeros((6, 2), "float32")
        np.add.at(summed, indices, values)
        reference_steps.append((summed, d))
    _, applied = _accumulate(steps, [table, dense], k)

    multi = optax.MultiSteps(optax.identity(), every_k_schedule=k)
    params = (jnp.zeros((6, 2)), jnp.zeros(3))
    state = multi.init(params)
    expected = []
    for summed, d in reference_steps:
        out, state = multi.update((jnp.asarray(summed), jnp.asarray(d)), state, params)
        if bool(multi.has_updated(state)):
            expected.append([np.asarray(x) for x in out])
    assert len(applied) == len(expected) == updates
    for ours, theirs in zip(applied, expected):
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(), b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("steps, error", [(0, ValueError), (-2, ValueError), (2.5, TypeError), ("3", TypeError),
                                          (True, TypeError)])
def test_steps_are_checked(steps, error):
    with pytest.raises(error, match=r"`steps`.*Received: steps="):
        GradientAccumulator(steps)
