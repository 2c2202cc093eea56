"""A model computing in 16 bits is checked as a float32 copy, not by 16-bit differences."""

import numpy as np
import keras
import pytest

from keras_trainkit.diagnostics import gradient_check


def _mlp(dtype=None):
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh", dtype=dtype),
                             keras.layers.Dense(2, dtype=dtype)])


def _numpy_gradients(model, x, y):
    """d mean((tanh(x W1 + b1) W2 + b2 - y)^2) / d weights, by hand in float64 numpy."""
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    hidden = np.tanh(x @ w1 + b1)
    d_out = 2 * (hidden @ w2 + b2 - y) / y.size
    d_pre = (d_out @ w2.T) * (1 - hidden ** 2)
    return {"dense/kernel": x.T @ d_pre, "dense/bias": d_pre.sum(0),
            "dense_1/kernel": hidden.T @ d_out, "dense_1/bias": d_out.sum(0)}


@pytest.mark.parametrize("dtype", ["mixed_float16", "float16"])
def test_a_correct_16_bit_model_passes_in_its_own_precision(dtype):
    """float64=False used to difference the 16-bit loss: a correct model FAILED with max relative
    error 1.915 (mixed_float16, reported as "float32") and 1.0 (float16). The autodiff values must
    match the float64 numpy gradient of the same weights."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    model = _mlp(dtype)
    weights = [w.copy() for w in model.get_weights()]
    result = gradient_check(model, x, y, "mse", num_coordinates=30, float64=False)
    assert result.passed and result.max_relative_error < 5e-2, str(result)
    assert result.dtype == "float32"
    reference = _numpy_gradients(model, x.astype(np.float32).astype(np.float64), y)
    # the check ran on a copy whose Dense layers are named anew: order them by their number
    layers = sorted({c.weight.split("/")[-2] for c in result.coordinates},
                    key=lambda name: int(name.rpartition("_")[2]) if "_" in name else 0)
    assert len(layers) == 2
    for check in result.coordinates:
        layer, kind = check.weight.split("/")[-2:]
        expected = reference[f"{['dense', 'dense_1'][layers.index(layer)]}/{kind}"][check.index]
        assert abs(check.analytic - expected) <= 1e-4 + 1e-3 * abs(expected), (check, expected)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
