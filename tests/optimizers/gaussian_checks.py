"""Checks that a float64 sample is N(0, 1) noise, for GradientNoise's tests on every backend,
and the schedule those tests draw with (``ETA``, ``GAMMA``, ``SHAPES``).

Against scipy (Kolmogorov-Smirnov against the standard normal CDF and the
two-sided 3-sigma tail), plus independence of disjoint parts of one draw;
``tests/optimizers/test_gradient_noise.py`` shows each check rejecting wrong noise.
"""

import numpy as np
from scipy import special, stats

ETA, GAMMA = 0.3, 0.55
SHAPES = [(300, 333), (7,)]  # 99,907 samples a step; the odd size takes the odd-length path


def scheduled_sigma(t):
    """The paper's sigma_t = sqrt(eta / (1 + t)^gamma), not the transform's."""
    return np.sqrt(ETA / (1.0 + t) ** GAMMA)


def gaussian_problems(z):
    """Why the float64 sample ``z`` is not N(0, 1) (empty if it passes)."""
    n = z.size
    problems = []
    p = stats.kstest(z, "norm").pvalue
    if p < 1e-3:
        problems.append(f"KS p-value {p:.2g}")
    tail = np.mean(np.abs(z) > 3.0)
    expected = special.erfc(3.0 / np.sqrt(2.0))  # P(|Z| > 3) = 0.0027
    if abs(tail - expected) > 5 * np.sqrt(expected * (1 - expected) / n):
        problems.append(f"P(|z| > 3) = {tail:.5f}, expected {expected:.5f}")
    # Disjoint parts of one draw are independent: the two halves, and even against odd
    # positions, are uncorrelated, and so are their squares (which Box-Muller pairs share r in).
    half = n // 2
    pairs = [("halves", z[:half], z[half : 2 * half]), ("neighbours", z[0 : 2 * half : 2], z[1 : 2 * half : 2])]
    for name, a, b in pairs:
        if not uncorrelated(a, b):
            problems.append(f"{name} correlated")
    return problems


def uncorrelated(a, b):
    limit = 5 / np.sqrt(a.size)
    return abs(np.corrcoef(a, b)[0, 1]) < limit and abs(np.corrcoef(a**2, b**2)[0, 1]) < limit


def assert_step_noise(t, big, small, previous):
    """Step ``t``'s noise (the two tensors of ``SHAPES``, flattened, float64) is
    N(0, sigma_t^2) and uncorrelated with the previous step's standardized noise
    (``None`` at the first step); returns this step's standardized noise."""
    big, small = big / scheduled_sigma(t), small / scheduled_sigma(t)
    z = np.concatenate([big, small])
    assert gaussian_problems(z) == [] and gaussian_problems(big) == [], f"step {t}"
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)
    if previous is not None:
        assert uncorrelated(z, previous), f"steps {t - 1} and {t}"
    return z
