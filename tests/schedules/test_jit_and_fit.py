"""Schedules inside XLA-compiled ``tf.function`` and a jit-compiled ``model.fit``."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit import schedules
from tests.schedules.test_closed_form import ALL


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_schedule_compiles_with_xla(schedule):
    checked = [0, 5, 10, 39, 40, 99, 250]
    step = tf.Variable(0, dtype=tf.int64, trainable=False)  # like optimizer.iterations

    @tf.function(jit_compile=True)
    def compiled(vector):
        return schedule(step), schedule(vector)

    eager = np.asarray(schedule(np.array(checked, dtype="int64")), dtype="float64")
    scalars = []
    for s in checked:
        step.assign(s)
        scalar, vector = compiled(tf.constant(checked, tf.int64))
        scalars.append(float(scalar))
    np.testing.assert_allclose(scalars, eager, rtol=1e-6)
    np.testing.assert_allclose(vector.numpy(), eager, rtol=1e-6)


def test_nested_schedule_in_jit_compiled_fit_counts_optimizer_updates():
    keras.utils.set_random_seed(0)
    schedule = schedules.Warmup(
        schedules.SequentialSchedule(
            [schedules.OneCycle(0.05, total_steps=8), keras.optimizers.schedules.ExponentialDecay(0.01, 4, 0.5)],
            boundaries=[8],
        ),
        warmup_steps=3,
    )
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse", jit_compile=True)
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)  # 5 updates per epoch
    optimizer = model.optimizer
    assert int(optimizer.iterations) == 15
    np.testing.assert_allclose(float(optimizer.learning_rate), float(schedule(15)), rtol=1e-6)


# Step counts whose float32 division by themselves XLA rounds below 1 (it divides through a
# reciprocal): floor_divide(41.0, 41.0) was 0 there, so the drop or restart came a step late.
XLA_UNEVEN = (41, 47, 55, 61, 82, 97)


@pytest.mark.parametrize("length", XLA_UNEVEN)
def test_boundaries_fall_on_their_step_under_xla(length):
    cases = {
        "StepDecay": (schedules.StepDecay(1.0, length, 0.5), lambda k: 0.5 ** (k // length)),
        "CosineAnnealingWarmRestarts": (
            schedules.CosineAnnealingWarmRestarts(1.0, length),
            lambda k: 0.5 * (1.0 + np.cos(np.pi * (k % length) / length))),
        "CyclicalLearningRate": (  # triangular2: each cycle's height is halved
            schedules.CyclicalLearningRate(0.0, 1.0, step_size=length, mode="triangular2"),
            lambda k: (1.0 - abs(k / length - 2 * (k // (2 * length)) - 1)) / 2 ** (k // (2 * length))),
    }
    steps = [length - 1, length, length + 1, 2 * length, 3 * length - 1, 3 * length, 4 * length]
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    for name, (schedule, formula) in cases.items():
        compiled = tf.function(lambda: schedule(step), jit_compile=True)
        values = []
        for k in steps:
            step.assign(k)
            values.append(float(compiled()))
        np.testing.assert_allclose(values, [formula(k) for k in steps], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name} with {length} steps")
