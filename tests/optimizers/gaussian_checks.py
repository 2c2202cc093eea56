"""Checks that a float64 sample is N(0, 1) noise, for GradientNoise's tests on every backend.

Against scipy (Kolmogorov-Smirnov against the standard normal CDF and the
two-sided 3-sigma tail), plus independence of disjoint parts of one draw;
``tests/optimizers/test_gradient_noise.py`` shows each check rejecting wrong noise.
"""

import numpy as np
from scipy import special, stats


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
