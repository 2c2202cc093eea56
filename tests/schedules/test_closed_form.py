"""Every schedule against a float64 numpy transcription of its formula, 1,000+ steps.

The transcriptions are written per step in plain Python/numpy (loops, ``math``),
independently of the library's vectorized ``keras.ops`` code.
"""

import math

import numpy as np
import pytest

from keras_trainkit import schedules
from tests.schedules.helpers import RTOL, assert_matches, values

STEPS = 1500


def per_step(formula, steps=STEPS):
    return np.array([formula(t) for t in range(steps)], dtype="float64")


def cosine(t, T):
    return 0.5 * (1.0 + math.cos(math.pi * t / T))


def test_step_decay_closed_form():
    lr, d, gamma = 0.1, 97, 0.3
    expected = per_step(lambda t: lr * gamma ** (t // d))
    assert_matches(values(schedules.StepDecay(lr, d, gamma), STEPS), expected)


def test_step_decay_from_epochs_and_epochs_to_steps():
    assert schedules.epochs_to_steps(30, 390) == 11700
    assert schedules.epochs_to_steps(0.5, 101) == 50  # round(50.5) -> 50 (banker's rounding)
    built = schedules.StepDecay.from_epochs(0.1, epochs_per_drop=3, steps_per_epoch=50, gamma=0.5)
    assert built.step_size == 150
    expected = per_step(lambda t: 0.1 * 0.5 ** (t // 150))
    assert_matches(values(built, STEPS), expected)


@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_linear_decay_closed_form(alpha):
    lr, T = 0.1, 1200
    expected = per_step(lambda t: lr * (alpha + (1 - alpha) * (1 - min(t, T) / T)))
    assert_matches(values(schedules.LinearDecay(lr, T, alpha), STEPS), expected)


@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_cosine_annealing_course_formula(alpha):
    # Course notes: eta_t = alpha + (1/2)(1 - alpha)(1 + cos(pi t / T)), scaled by eta_0.
    lr, T = 0.1, 1000
    expected = per_step(lambda t: lr * (alpha + 0.5 * (1 - alpha) * (1 + math.cos(math.pi * min(t, T) / T))))
    assert_matches(values(schedules.CosineAnnealing(lr, T, alpha), STEPS), expected)


@pytest.mark.parametrize(
    "first, t_mul, m_mul, alpha, rtol",
    [
        (64, 2.0, 1.0, 0.0, RTOL),
        (33, 1.0, 0.9, 0.1, RTOL),
        # A non-integer t_mul puts the restarts between steps (50, 125, 237.5, ...);
        # those real boundaries are float32 numbers from t_mul ** i, a few ulps
        # off, which moves the phase inside a cycle by ~1e-4 step: 1e-5 relative.
        (50, 1.5, 0.7, 0.05, 1e-5),
    ],
)
def test_warm_restarts_closed_form(first, t_mul, m_mul, alpha, rtol):
    lr = 0.1

    def formula(t):
        start, length, i = 0.0, float(first), 0
        while t >= start + length:  # walk the cycles one by one
            start += length
            length *= t_mul
            i += 1
        peak = lr * m_mul**i
        return peak * (alpha + (1 - alpha) * cosine(t - start, length))

    ours = schedules.CosineAnnealingWarmRestarts(lr, first, t_mul=t_mul, m_mul=m_mul, alpha=alpha)
    assert_matches(values(ours, STEPS), per_step(formula), rtol=rtol)


@pytest.mark.parametrize("start", [0.0, 1e-5])
def test_inverse_sqrt_closed_form(start):
    peak, W = 1e-3, 400

    def formula(t):
        if t < W:
            return start + (peak - start) * t / W
        return peak / math.sqrt(t) * math.sqrt(W)

    ours = schedules.InverseSqrtDecay(peak, warmup_steps=W, start_learning_rate=start)
    assert_matches(values(ours, STEPS), per_step(formula))


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_closed_form(three_phase, anneal):
    top, T, pct, div, final_div = 0.3, 1200, 0.3, 20.0, 1e3
    low = top / div
    bottom = low / final_div
    if three_phase:
        ends = [pct * T - 1, 2 * pct * T - 2, T - 1]
        pairs = [(low, top), (top, low), (low, bottom)]
    else:
        ends = [pct * T - 1, T - 1]
        pairs = [(low, top), (top, bottom)]

    def formula(t):
        begin = 0.0
        for end, (a, b) in zip(ends, pairs):
            if t <= end:
                q = (t - begin) / (end - begin)
                return b + (a - b) * cosine(q, 1.0) if anneal == "cos" else a + (b - a) * q
            begin = end
        return pairs[-1][1]  # after the cycle: the final value

    ours = schedules.OneCycle(top, T, pct, anneal, div, final_div, three_phase)
    assert_matches(values(ours, STEPS), per_step(formula))


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclical_closed_form(mode):
    base, top, up, down, gamma = 1e-4, 1e-2, 80, 120, 0.999

    def formula(t):
        cycle, into = divmod(t, up + down)
        height = into / up if into <= up else 1 - (into - up) / down
        scale = {"triangular": 1.0, "triangular2": 0.5**cycle, "exp_range": gamma**t}[mode]
        return base + (top - base) * height * scale

    ours = schedules.CyclicalLearningRate(base, top, up, down, mode, gamma)
    assert_matches(values(ours, STEPS), per_step(formula))


@pytest.mark.parametrize("warmup_type", ["linear", "cosine", "exponential"])
@pytest.mark.parametrize("offset", [True, False])
def test_warmup_closed_form(warmup_type, offset):
    W, start, lr, T = 250, 1e-4, 0.1, 1000
    inner = schedules.CosineAnnealing(lr, T, alpha=0.05)

    def inner_value(t):
        return lr * (0.05 + 0.95 * cosine(min(t, T), T))

    def formula(t):
        if t >= W:
            return inner_value(t - W if offset else t)
        target = inner_value(0 if offset else W)
        q = t / W
        if warmup_type == "linear":
            return start + (target - start) * q
        if warmup_type == "cosine":
            return start + (target - start) * (1 - math.cos(math.pi * q)) / 2
        return start * (target / start) ** q

    ours = schedules.Warmup(inner, W, start_learning_rate=start, warmup_type=warmup_type, offset=offset)
    assert_matches(values(ours, STEPS), per_step(formula))


def test_warmup_is_continuous_at_the_hand_over():
    for offset in (True, False):
        ours = schedules.Warmup(schedules.CosineAnnealing(0.1, 100), 20, offset=offset)
        v = values(ours, 40)
        assert abs(v[20] - v[19]) < 0.1 * 2 / 20  # one warm-up increment at most


@pytest.mark.parametrize("decay_type", ["linear", "cosine", "1-sqrt"])
def test_warmup_stable_decay_closed_form(decay_type):
    peak, T, W, D, alpha, start = 0.05, 1400, 150, 400, 0.02, 1e-4

    def formula(t):
        if t < W:
            return start + (peak - start) * t / W
        q = min(max(t - (T - D), 0) / D, 1.0)
        shape = {"linear": 1 - q, "cosine": cosine(q, 1.0), "1-sqrt": 1 - math.sqrt(q)}[decay_type]
        return peak * (alpha + (1 - alpha) * shape)

    ours = schedules.WarmupStableDecay(peak, T, W, D, decay_type, alpha, start)
    assert_matches(values(ours, STEPS), per_step(formula))


def test_sequential_schedule_restarts_each_count():
    pieces = [schedules.StepDecay(0.1, 50, 0.5), 0.01, schedules.InverseSqrtDecay(0.02, 100)]
    ours = schedules.SequentialSchedule(pieces, boundaries=[300, 700])

    def formula(t):
        if t < 300:
            return 0.1 * 0.5 ** (t // 50)
        if t < 700:
            return 0.01
        s = t - 700
        return 0.02 * s / 100 if s < 100 else 0.02 * math.sqrt(100 / s)

    assert_matches(values(ours, STEPS), per_step(formula))


def test_sequential_schedule_wraps_keras_schedules():
    import keras

    inner = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5)
    ours = schedules.SequentialSchedule([0.05, inner], boundaries=[200])
    expected = per_step(lambda t: 0.05 if t < 200 else 0.1 * 0.5 ** ((t - 200) / 100), 1000)
    assert_matches(values(ours, 1000), expected)


ALL = [
    schedules.StepDecay(0.1, 30),
    schedules.LinearDecay(0.1, 100),
    schedules.InverseSqrtDecay(0.01, 20),
    schedules.CosineAnnealing(0.1, 100, 0.1),
    schedules.CosineAnnealingWarmRestarts(0.1, 10, 2.0, 0.8),
    schedules.OneCycle(0.1, 100, three_phase=True),
    schedules.CyclicalLearningRate(0.01, 0.1, 7, mode="exp_range", gamma=0.99),
    schedules.Warmup(schedules.LinearDecay(0.1, 90), 10, warmup_type="cosine"),
    schedules.SequentialSchedule([0.1, schedules.CosineAnnealing(0.1, 50)], [40]),
    schedules.WarmupStableDecay(0.1, 100, 10, 30, "1-sqrt"),
]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_vectorized_equals_step_by_step_with_an_int64_variable(schedule):
    import keras

    steps = [0, 1, 7, 10, 39, 40, 41, 99, 100, 150]
    vector = np.asarray(schedule(np.array(steps, dtype="int64")), dtype="float64")
    counter = keras.Variable(0, dtype="int64", trainable=False)  # like optimizer.iterations
    scalar = []
    for s in steps:
        counter.assign(s)
        scalar.append(float(np.asarray(schedule(counter))))
    # Not bitwise: TensorFlow's vectorized exp/sin kernels may round differently
    # from the scalar ones in the last bit.
    np.testing.assert_allclose(vector, np.asarray(scalar), rtol=1e-6, atol=0)
    assert np.asarray(schedule(counter)).dtype == np.float32
