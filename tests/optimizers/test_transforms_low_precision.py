"""Clipping and centralization of float16 / bfloat16 gradients, against a float64 numpy transcription.

The exact result (the formula in float64 on the low-precision gradient's
values) rounded once to the gradient's dtype is the best a transform can
return; these tests allow one unit in the last place (ulp) of that dtype.
Before the fix the clipping scale ``max_norm / ||g||`` (or AGC's
``max_i / ||G_i||``) was itself rounded to float16, where a scale below
float16's smallest normal (6.1e-5) keeps only a few significant bits, and
GradientCentralization rounded the column mean to bfloat16 before subtracting.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.optimizers.transforms import (
    AdaptiveGradientClipping,
    AutoClip,
    ClipByGlobalNorm,
    GradientCentralization,
)

SIGNIFICAND_BITS = {"float16": 10, "bfloat16": 7}
SMALLEST_EXPONENT = {"float16": -14, "bfloat16": -126}


def _ulp(x, dtype):
    """The spacing of ``dtype`` at the float64 values ``x`` (normal and subnormal alike)."""
    exponent = np.floor(np.log2(np.maximum(np.abs(x), 1e-300)))
    exponent = np.maximum(exponent, SMALLEST_EXPONENT[dtype])
    return 2.0 ** (exponent - SIGNIFICAND_BITS[dtype])


def _as64(tensor):
    return tf.cast(tensor, tf.float64).numpy()


def _assert_within_one_ulp(ours, exact, dtype):
    error_in_ulps = np.abs(_as64(ours) - exact) / _ulp(exact, dtype)
    assert np.max(error_in_ulps) <= 1.0, f"max error {np.max(error_in_ulps):.1f} ulp of {dtype}"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("max_norm", [1.0, 0.1, 0.01])
def test_clip_by_global_norm_low_precision_matches_float64(dtype, max_norm):
    rng = np.random.default_rng(0)
    grads = [tf.cast(rng.uniform(100.0, 300.0, size=(4000,)), dtype), tf.cast(rng.normal(size=(7,)), dtype)]
    variables = [keras.Variable(np.zeros(g.shape), dtype=dtype) for g in grads]
    ours = ClipByGlobalNorm(max_norm)(grads, variables)
    values = [_as64(g) for g in grads]
    norm = np.sqrt(sum(np.sum(v**2) for v in values))
    for out, value in zip(ours, values):
        assert out.dtype == dtype
        _assert_within_one_ulp(out, value * (max_norm / norm), dtype)


def test_autoclip_low_precision_matches_float64():
    """AutoClip scales through the same path: a history of one norm clips at that norm's 0th percentile."""
    rng = np.random.default_rng(1)
    clip = AutoClip(0.0, history_size=4)
    variable = keras.Variable(np.zeros(4000), dtype="float16")
    big = tf.cast(rng.uniform(100.0, 300.0, size=(4000,)), "float16")
    small = tf.cast(rng.uniform(0.0, 1e-3, size=(4000,)), "float16")
    clip([small], [variable])  # history: one small norm
    [ours] = clip([big], [variable])
    threshold = np.linalg.norm(_as64(small))
    _assert_within_one_ulp(ours, _as64(big) * (threshold / np.linalg.norm(_as64(big))), "float16")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_adaptive_gradient_clipping_low_precision_matches_float64(dtype):
    """Brock et al. 2021: G_i * clipping * max(||W_i||, eps) / max(||G_i||, 1e-6) where clipped."""
    rng = np.random.default_rng(2)
    kernel = tf.cast(rng.normal(scale=0.01, size=(100, 3)), dtype)
    bias = tf.cast(np.zeros(3), dtype)
    grads = [tf.cast(rng.normal(loc=50.0, size=(100, 3)), dtype), tf.cast(rng.normal(size=(3,)), dtype)]
    variables = [keras.Variable(kernel, dtype=dtype), keras.Variable(bias, dtype=dtype)]
    clipping, eps = 0.01, 1e-3
    ours = AdaptiveGradientClipping(clipping, eps=eps)(grads, variables)
    for out, g, w, axis in zip(ours, grads, variables, [0, None]):
        g64, w64 = _as64(g), _as64(w.value)
        w_norm = np.sqrt(np.sum(w64**2, axis=axis, keepdims=True))
        g_norm = np.sqrt(np.sum(g64**2, axis=axis, keepdims=True))
        limit = clipping * np.maximum(w_norm, eps)
        exact = np.where(g_norm > limit, g64 * limit / np.maximum(g_norm, 1e-6), g64)
        _assert_within_one_ulp(out, exact, dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gradient_centralization_low_precision_matches_float64(dtype):
    """Yong et al. 2020: G - mean(G over the fan-in), per output unit."""
    rng = np.random.default_rng(3)
    grad = tf.cast(rng.normal(loc=5.0, size=(4096, 3)), dtype)
    [ours] = GradientCentralization()([grad], [keras.Variable(np.zeros((4096, 3)), dtype=dtype)])
    g64 = _as64(grad)
    assert ours.dtype == dtype
    _assert_within_one_ulp(ours, g64 - g64.mean(axis=0, keepdims=True), dtype)
