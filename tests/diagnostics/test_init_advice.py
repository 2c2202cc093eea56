"""The init check's advice names LeCun normal for SELU networks, and does not tell a
LeCun-initialized tanh network to try Glorot (the same variance on square layers)."""

import numpy as np
import keras

from keras_trainkit.diagnostics import check_initialization
from keras_trainkit.diagnostics._init_advice import scale_advice

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _deep(activation, initializer, depth=10, width=64):
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(width, activation=activation, kernel_initializer=initializer)
              for _ in range(depth)]
    return keras.Sequential([keras.Input((width,)), *layers, keras.layers.Dense(10, kernel_initializer=initializer)])


def _numpy_stds(model, x, activation):
    """Per-layer activation standard deviations of a float64 numpy forward pass."""
    h, stds = x.astype(np.float64), []
    for i, layer in enumerate(model.layers):
        kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
        h = h @ kernel + bias
        if i < len(model.layers) - 1:
            h = activation(h)
        stds.append(float(h.std()))
    return np.array(stds)


def _selu(z):
    return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))


def test_a_shrinking_selu_network_is_advised_lecun_normal():
    """Numpy: LeCun normal keeps a 10-layer SELU net's activation std near 1 (the self-normalizing
    fixed point, Klambauer et al. 2017), N(0, 0.05) shrinks it > 10x. The old advice called SELU
    "tanh/sigmoid/linear" and said "try Glorot (glorot_uniform) or LSUV"."""
    x = np.random.default_rng(0).normal(size=(256, 64)).astype("float32")
    lecun = _numpy_stds(_deep("selu", "lecun_normal"), x, _selu)
    assert np.all((lecun[:-1] > 0.7) & (lecun[:-1] < 1.3)), lecun
    small = _deep("selu", keras.initializers.RandomNormal(stddev=0.05))
    stds = _numpy_stds(small, x, _selu)
    assert stds[-1] < stds[0] / 10
    result = check_initialization(small, x)
    np.testing.assert_allclose([s.activation_std for s in result.layers], stds, rtol=1e-5)
    warning = next(w for w in result.warnings if w.kind == "vanishing_activations")
    assert "LeCun (lecun_normal)" in warning.reason and "SELU" in warning.reason
    assert "Glorot" not in warning.reason and "tanh" not in warning.reason


def test_a_lecun_tanh_network_is_not_told_to_try_glorot():
    """Glorot's ``2 / (fan_in + fan_out)`` equals LeCun's ``1 / fan_in`` on square layers: both
    draw the same kernel variance (numpy check), so "try Glorot" changes nothing there."""
    model = _deep("tanh", "lecun_normal", depth=4)
    variances = [float(np.var(layer.get_weights()[0])) for layer in model.layers[:-1]]
    np.testing.assert_allclose(variances, 2 / (64 + 64), rtol=0.1)
    kernels = [layer for layer in model.layers]
    advice = scale_advice(model.layers, kernels)
    assert "Glorot" not in advice.split("try")[1] and "LSUV" in advice, advice
    # a He-initialized tanh network still gets the Glorot advice
    he = _deep("tanh", "he_normal", depth=4)
    assert "Glorot (glorot_uniform)" in scale_advice(he.layers, he.layers)
