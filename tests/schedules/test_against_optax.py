"""Schedules against optax's schedule functions (evaluated in float64) over 1,000+ steps."""

import numpy as np
import pytest

from keras_trainkit import schedules
from tests.schedules.helpers import assert_matches, values

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")


def optax_values(make, steps):
    """Build and evaluate an optax schedule with 64-bit jax, so it is a float64 reference."""
    with jax.enable_x64(True):
        out = np.asarray(jax.jit(make())(np.arange(steps, dtype="int64")))
    assert out.dtype == np.float64
    return out


@pytest.mark.parametrize("start", [0.0, 1e-4])
def test_warmup_cosine_matches_optax_warmup_cosine_decay_schedule(start):
    steps, warm, peak, end = 2000, 200, 0.1, 1e-3
    # optax's decay_steps counts the warm-up; CosineAnnealing is sized for the
    # steps after it, because Warmup(offset=True) restarts its count at step 200.
    ours = schedules.Warmup(
        schedules.CosineAnnealing(peak, decay_steps=steps - warm, alpha=end / peak),
        warmup_steps=warm,
        start_learning_rate=start,
    )
    reference = optax_values(
        lambda: optax.warmup_cosine_decay_schedule(start, peak, warm, steps, end), steps + 100
    )
    assert_matches(values(ours, steps + 100), reference)


@pytest.mark.parametrize("t_mul, m_mul, alpha", [(2.0, 0.8, 0.1), (1.0, 0.5, 0.0), (3.0, 1.0, 0.02)])
def test_warm_restarts_match_optax_sgdr_schedule(t_mul, m_mul, alpha):
    first, peak, cycles = 60, 0.1, 5
    lengths = [int(first * t_mul**i) for i in range(cycles)]
    steps = sum(lengths)
    assert steps >= 300
    ours = schedules.CosineAnnealingWarmRestarts(peak, first, t_mul=t_mul, m_mul=m_mul, alpha=alpha)
    kwargs = [
        dict(
            init_value=peak * m_mul**i,
            peak_value=peak * m_mul**i,
            warmup_steps=0,
            decay_steps=length,
            end_value=alpha * peak * m_mul**i,
        )
        for i, length in enumerate(lengths)
    ]
    reference = optax_values(lambda: optax.sgdr_schedule(kwargs), steps)
    assert_matches(values(ours, steps), reference)


def test_long_warm_restarts_match_optax_sgdr_schedule():
    peak, lengths = 0.05, [100, 200, 400, 800]
    ours = schedules.CosineAnnealingWarmRestarts(peak, 100, t_mul=2.0, m_mul=0.9, alpha=0.01)
    kwargs = [
        dict(init_value=peak * 0.9**i, peak_value=peak * 0.9**i, warmup_steps=0, decay_steps=n,
             end_value=0.01 * peak * 0.9**i)
        for i, n in enumerate(lengths)
    ]
    assert_matches(values(ours, 1500), optax_values(lambda: optax.sgdr_schedule(kwargs), 1500))


def test_linear_decay_matches_optax_linear_schedule():
    steps, lr = 1500, 0.2
    ours = schedules.LinearDecay(lr, decay_steps=1000, alpha=0.05)
    reference = optax_values(lambda: optax.linear_schedule(lr, 0.05 * lr, transition_steps=1000), steps)
    assert_matches(values(ours, steps), reference)


def test_step_decay_matches_optax_staircase_exponential_decay():
    steps = 1500
    ours = schedules.StepDecay(0.3, step_size=125, gamma=0.7)
    reference = optax_values(
        lambda: optax.exponential_decay(0.3, transition_steps=125, decay_rate=0.7, staircase=True), steps
    )
    assert_matches(values(ours, steps), reference)


@pytest.mark.parametrize("decay_type", ["linear", "cosine"])
def test_warmup_stable_decay_matches_optax_join_schedules(decay_type):
    total, warm, decay, peak, alpha = 1500, 100, 300, 0.02, 0.1
    ours = schedules.WarmupStableDecay(
        peak, total_steps=total, warmup_steps=warm, decay_steps=decay, decay_type=decay_type, alpha=alpha
    )

    def make():
        if decay_type == "linear":
            tail = optax.linear_schedule(peak, alpha * peak, decay)
        else:
            tail = optax.cosine_decay_schedule(peak, decay, alpha=alpha)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, peak, warm), optax.constant_schedule(peak), tail],
            boundaries=[warm, total - decay],
        )

    assert_matches(values(ours, total + 50), optax_values(make, total + 50))


def test_sequential_schedule_matches_optax_join_schedules():
    steps = 1200
    ours = schedules.SequentialSchedule(
        [schedules.Warmup(0.1, 50), schedules.CosineAnnealing(0.1, 400), 0.02, schedules.LinearDecay(0.02, 300)],
        boundaries=[50, 450, 800],
    )
    reference = optax_values(
        lambda: optax.join_schedules(
            [
                optax.linear_schedule(0.0, 0.1, 50),
                optax.cosine_decay_schedule(0.1, 400),
                optax.constant_schedule(0.02),
                optax.linear_schedule(0.02, 0.0, 300),
            ],
            boundaries=[50, 450, 800],
        ),
        steps,
    )
    assert_matches(values(ours, steps), reference)
