"""LSUV on half-precision layers, seed checks (references: numpy, the rule)."""


import keras
import numpy as np
import pytest

from keras_trainkit.initializers import lsuv_initialize, select_weights
from tests._other_backend import run_under_backend


def _mlp(width, dtype="float32"):
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(width, activation="relu", dtype=dtype),
                             keras.layers.Dense(4, dtype=dtype)])


def _pre_activations(model, x):
    """Each Dense layer's pre-activation output, in float64 numpy."""
    outputs, h = [], x.astype("float64")
    for layer in model.layers:
        w, b = (keras.ops.convert_to_numpy(v).astype("float64") for v in (layer.kernel, layer.bias))
        z = h @ w + b
        outputs.append(z)
        h = np.maximum(z, 0) if layer.activation is keras.activations.relu else z
    return outputs


@pytest.mark.parametrize("dtype", ["bfloat16", "mixed_bfloat16"])
def test_lsuv_bfloat16_layers(dtype):
    # bfloat16 kernels: the orthogonal start (a QR) has no bfloat16 kernel in TensorFlow,
    # LSUV crashed. bfloat16 outputs (mixed_bfloat16): np.var of a bfloat16 array sums
    # in bfloat16, LSUV read about half the variance and left the layers near 2.
    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    model = _mlp(16, dtype=dtype)
    lsuv_initialize(model, x, tol=0.05, seed=0)
    for z in _pre_activations(model, x):
        assert abs(np.var(z) - 1.0) < 0.08  # tol plus bfloat16 rounding of the kernels


_JAX_SCRIPT = """
import numpy as np, keras
from keras_trainkit.initializers import lsuv_initialize
x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, dtype="float16"),
                          keras.layers.Dense(4, dtype="float16")])
variances = lsuv_initialize(model, x, seed=2**32 - 1)
assert all(abs(v - 1) < 0.1 for v in variances.values()), variances
"""


@pytest.mark.backends
def test_lsuv_float16_and_largest_seed_under_jax():
    # On JAX: float16 kernels crashed in the QR, seed=2**32-1 overflowed uint32 for layer 2.
    run_under_backend("jax", ["-c", _JAX_SCRIPT], timeout=120)


@pytest.mark.parametrize("seed,error", [(-1, ValueError), (2**32, ValueError), (True, TypeError),
                                        (1.0, TypeError)])
def test_lsuv_refuses_bad_seeds(seed, error):
    x = np.ones((8, 8), "float32")
    with pytest.raises(error, match=f"Received: seed={seed!r}"):
        lsuv_initialize(_mlp(4), x, seed=seed)


@pytest.mark.parametrize("seed,error", [(-1, ValueError), (True, TypeError)])
def test_select_weights_refuses_bad_seeds(seed, error):
    small, large = _mlp(4), _mlp(8)
    with pytest.raises(error, match=f"Received: seed={seed!r}"):
        select_weights(small, large, method="random", seed=seed)
