"""A numpy transcription of a two-layer linear model's mean-squared-error gradient."""

import numpy as np


def two_layer_mse_gradients(weights, xb, yb):
    """Gradients of ``mean((x K1 + b1) K2 + b2 - y)**2`` w.r.t. ``[K1, b1, K2, b2]``, in float64."""
    k1, b1, k2, b2 = weights
    xb, yb = xb.astype(np.float64), yb.astype(np.float64)
    hidden = xb @ k1 + b1
    d = 2.0 * (hidden @ k2 + b2 - yb) / yb.size
    dh = d @ k2.T
    return [xb.T @ dh, dh.sum(0), hidden.T @ d, d.sum(0)]
