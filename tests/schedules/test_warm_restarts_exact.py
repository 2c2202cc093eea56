"""CosineAnnealingWarmRestarts restarts exactly where the real cycle starts fall.

Reference: the docstring's formula transcribed with exact rational arithmetic
(``fractions.Fraction`` of the decimal ``t_mul``) for the cycle starts
``S_i = sum_{j < i} T_0 * t_mul**j``, and float64 ``math.cos`` for the phase.
Before the fix the float32 ``t_mul ** i`` (``1.1`` rounds to ``1.10000002``) put
restarts that fall on a step (``S_1 = T_0`` always; ``S_4 = 130`` for
``T_0 = 16, t_mul = 1.5``) an ulp late, so the restart step got the floor instead
of the peak; ``t_mul`` near 1 (``1.001``) broke every cycle after the first; and
under ``jax.jit`` an integer ``t_mul = 4`` missed its restarts at 50 and 210.
"""

import json
import math
from fractions import Fraction

import keras
import numpy as np
import pytest

from keras_trainkit import schedules
from tests._other_backend import run_under_backend
from tests.schedules.helpers import values


def exact_reference(steps, first, t_mul, m_mul=1.0, alpha=0.0, peak=1.0):
    """lr(t) = peak m_mul**i (alpha + (1 - alpha) (1 + cos(pi tau)) / 2), S_i exact in rationals."""
    multiplier = Fraction(t_mul)  # a decimal string: "1.1" is 11/10
    start, length, cycle, out = Fraction(0), Fraction(first), 0, []
    for t in range(steps):
        while t >= start + length:
            start, length, cycle = start + length, length * multiplier, cycle + 1
        tau = float((t - start) / length)
        shape = alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * tau))
        out.append(peak * m_mul**cycle * shape)
    return np.array(out)


@pytest.mark.parametrize(
    "first, t_mul, steps, m_mul, alpha, atol",
    [
        (10, "1.1", 120, 1.0, 0.0, 2e-6),  # old: 0.0 instead of 1.0 at steps 10 and 21
        (16, "1.5", 400, 0.8, 0.05, 2e-6),  # old: floor 0.0256 instead of peak 0.4096 at step 130
        (3, "1.2", 100, 1.0, 0.0, 2e-6),  # old: 0.0 instead of 1.0 at step 3
        # Cycles of about 2 steps near step 1500: the float32 phase is good to
        # ulp(1500) / 2 = 6e-5. Old: 1487 of 1500 steps off, by up to 1.0.
        (1, "1.001", 1500, 1.0, 0.0, 1e-4),
    ],
)
def test_restarts_fall_on_their_step(first, t_mul, steps, m_mul, alpha, atol):
    schedule = schedules.CosineAnnealingWarmRestarts(
        1.0, first, float(t_mul), m_mul=m_mul, alpha=alpha)
    reference = exact_reference(steps, first, t_mul, m_mul, alpha)
    # float32 phase within a cycle: a few ulps of the step count, relative to the cycle length.
    np.testing.assert_allclose(values(schedule, steps), reference, rtol=1e-5, atol=atol)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function with XLA")
def test_scalar_steps_under_xla_hit_the_restart():
    """Old: 0.0 instead of 1.0 at steps 10 and 21 (t_mul=1.1) under XLA too."""
    import tensorflow as tf
    schedule = schedules.CosineAnnealingWarmRestarts(1.0, 10, 1.1)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    compiled = tf.function(lambda: schedule(step), jit_compile=True)
    checked = [9, 10, 11, 20, 21, 22, 33, 34]  # restarts at 10, 21, 33.1
    got = []
    for k in checked:
        step.assign(k)
        got.append(float(compiled()))
    reference = exact_reference(35, 10, "1.1")[checked]
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=2e-6)


def test_huge_integer_t_mul_is_evaluated_not_refused_at_call_time():
    # Old: t_mul=1e30 passed validation and then raised "Can't convert Python
    # sequence with out-of-range integer to Tensor" at the first call (int64 power).
    schedule = schedules.CosineAnnealingWarmRestarts(1.0, 10, 1e30)
    reference = exact_reference(40, 10, "1e30")
    np.testing.assert_allclose(values(schedule, 40), reference, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("t_mul", [1.0, 2.0, 1.5])
def test_short_cycles_far_past_two_to_the_24_stay_finite_and_in_range(t_mul):
    """Old: NaN from step 2**27 on with 5-step cycles and t_mul=1 (in float32 the cycle's
    end rounded to its start: 0 / 0). Past 2**24 the phase is not exact (documented), but
    every value is a learning rate between the floor (0 here) and the peak."""
    schedule = schedules.CosineAnnealingWarmRestarts(0.1, 5, t_mul)
    steps = [2**27, 2**27 + 3, 3 * 10**8 + 3, 2**31 - 1, 10**12]
    got = np.array([float(schedule(k)) for k in steps])
    assert np.isfinite(got).all(), got
    assert ((got >= 0.0) & (got <= np.float32(0.1))).all(), got


_JAX_SCRIPT = """
import json, jax, numpy as np
from keras_trainkit import schedules
schedule = schedules.CosineAnnealingWarmRestarts(1.0, 10, 4.0)
steps = [9, 10, 49, 50, 51, 209, 210]
jitted = jax.jit(lambda step: schedule(step))
print("RESULT", json.dumps([float(jitted(np.int32(k))) for k in steps]))
"""


@pytest.mark.backends
def test_integer_t_mul_under_jax_jit():
    """Old: 0.0 instead of 1.0 at steps 50 and 210 (jit divides 150 / 3 through a reciprocal)."""
    stdout = run_under_backend("jax", ["-c", _JAX_SCRIPT]).stdout
    got = json.loads([line for line in stdout.splitlines() if line.startswith("RESULT ")][-1][7:])
    reference = exact_reference(211, 10, "4")[[9, 10, 49, 50, 51, 209, 210]]
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=2e-6)
