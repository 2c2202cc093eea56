"""SpectralNorm, SoftOrthogonality and SRIP against numpy formulas and finite differences."""

import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.regularizers import SRIP, SoftOrthogonality, SpectralNorm
from tests.conformance.fit_helpers import dense_model, regression_data


def _value_and_grad(regularizer, w):
    var = tf.Variable(w)
    with tf.GradientTape() as tape:
        value = regularizer(var)
    return float(value), tape.gradient(value, var).numpy()


def _training_call(regularizer, variable):
    """The penalty as a training step computes it, under a tape (``u`` advances only there)."""
    with tf.GradientTape():
        return float(regularizer(variable))


def _finite_difference(f, w, h=1e-6):
    grad = np.zeros_like(w)
    for index in np.ndindex(w.shape):
        plus, minus = w.copy(), w.copy()
        plus[index] += h
        minus[index] -= h
        grad[index] = (f(plus) - f(minus)) / (2 * h)
    return grad


def _as_matrix(w):
    return w.reshape(-1, w.shape[-1])


@pytest.fixture
def rng(request):
    """A generator of this test's own, seeded by its name: its draws do not depend on which
    tests ran before it (pytest may reorder a file's tests beside other files)."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def _with_singular_values(rng, shape, singular_values):
    """A random matrix of ``shape`` (reshaped from rows x cols) with these singular values."""
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    count = min(rows, cols)
    left, _ = np.linalg.qr(rng.normal(size=(rows, count)))
    right, _ = np.linalg.qr(rng.normal(size=(cols, count)))
    return (left @ np.diag(singular_values) @ right.T).reshape(shape)


@pytest.mark.parametrize("shape,mode", [((7, 4), "auto"), ((4, 7), "auto"), ((7, 4), "rows"),
                                        ((3, 2, 5), "columns")])
def test_soft_orthogonality_value_and_gradient(rng, shape, mode):
    w = rng.normal(size=shape) * 0.5
    reg = SoftOrthogonality(factor=0.3, mode=mode)

    def numpy_penalty(w):
        m = _as_matrix(w)
        use_cols = mode == "columns" or (mode == "auto" and m.shape[1] <= m.shape[0])
        gram = m.T @ m if use_cols else m @ m.T
        return 0.3 * np.sum((gram - np.eye(gram.shape[0])) ** 2)

    value, grad = _value_and_grad(reg, w)
    np.testing.assert_allclose(value, numpy_penalty(w), rtol=1e-10)
    np.testing.assert_allclose(grad, _finite_difference(numpy_penalty, w), rtol=1e-5, atol=1e-8)
    if mode == "columns":
        m = _as_matrix(w)
        np.testing.assert_allclose(_as_matrix(grad), 0.3 * 4 * m @ (m.T @ m - np.eye(m.shape[1])), rtol=1e-10)


@pytest.mark.parametrize("shape", [(9, 5), (3, 3, 4, 6)])
def test_spectral_norm_value_and_gradient(rng, shape):
    # a matrix with a clear singular-value gap, so 60 power iterations converge
    w = _with_singular_values(rng, shape, np.linspace(3.0, 0.5, shape[-1]))
    reg = SpectralNorm(factor=0.5, power_iterations=60)

    def numpy_penalty(w):
        return 0.5 * np.linalg.norm(_as_matrix(w), 2) ** 2

    value, grad = _value_and_grad(reg, w)
    np.testing.assert_allclose(value, numpy_penalty(w), rtol=1e-6)
    u, s, vt = np.linalg.svd(_as_matrix(w))
    analytic = 0.5 * 2 * s[0] * np.outer(u[:, 0], vt[0])  # d sigma^2 = 2 sigma u1 v1^T
    np.testing.assert_allclose(_as_matrix(grad), analytic, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad, _finite_difference(numpy_penalty, w), rtol=1e-4, atol=1e-6)
    unsquared = SpectralNorm(factor=1.0, power_iterations=60, squared=False)
    np.testing.assert_allclose(float(unsquared(w)), s[0], rtol=1e-6)


def test_spectral_norm_keeps_its_vector_between_calls(rng):
    w = rng.normal(size=(30, 20)).astype("float32")
    sigma = np.linalg.norm(w, 2)
    stateful = SpectralNorm(factor=1.0, power_iterations=1, squared=False)
    var = keras.Variable(w, name="kernel")
    estimates = [_training_call(stateful, var) for _ in range(60)]
    assert estimates[-1] == pytest.approx(sigma, rel=1e-3)
    assert all(b >= a - 1e-4 for a, b in zip(estimates, estimates[1:]))  # power iteration increases
    # A fresh instance each step (no state) stays at the one-iteration estimate.
    fresh = float(SpectralNorm(factor=1.0, power_iterations=1, squared=False)(var))
    assert fresh == pytest.approx(estimates[0]) and fresh < 0.99 * sigma
    state = stateful.get_config()["state"]
    assert list(state) == [var.path]
    resumed = SpectralNorm.from_config(stateful.get_config())
    assert float(resumed(var)) == pytest.approx(sigma, rel=1e-3)


@pytest.mark.parametrize("shape", [(8, 5), (5, 8)])
def test_srip_value_and_gradient(rng, shape):
    # Singular values 1.8 ... 0.3: the residual's eigenvalues s^2 - 1 are 2.24, 1.03, 0.10,
    # -0.54, -0.91, a clear gap, so 80 power iterations converge (0.46^80). A plain random
    # matrix may have two nearly equal ones (4.79 and 5.29 for one draw: 0.906^80 = 4e-4,
    # off by 5% in the gradient).
    w = _with_singular_values(rng, shape, np.linspace(1.8, 0.3, 5))
    reg = SRIP(factor=0.7, power_iterations=80)

    def numpy_penalty(w):
        m = _as_matrix(w)
        gram = m.T @ m if m.shape[1] <= m.shape[0] else m @ m.T
        return 0.7 * np.linalg.norm(gram - np.eye(gram.shape[0]), 2)

    value, grad = _value_and_grad(reg, w)
    np.testing.assert_allclose(value, numpy_penalty(w), rtol=1e-6)
    np.testing.assert_allclose(grad, _finite_difference(numpy_penalty, w), rtol=1e-4, atol=1e-6)


def test_spectral_norm_state_saved_with_keras_model(tmp_path):
    model = dense_model(kernel_regularizer=SpectralNorm(factor=0.1))
    model.compile(optimizer="sgd", loss="mse")
    x, y = regression_data()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    trained = model.get_layer("hidden").kernel_regularizer
    saved_state = trained.get_config()["state"]["hidden/kernel"]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    restored = loaded.get_layer("hidden").kernel_regularizer
    assert restored.get_config()["state"]["hidden/kernel"] == saved_state
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(loaded.get_layer("hidden").kernel)),
                               keras.ops.convert_to_numpy(trained(model.get_layer("hidden").kernel)),
                               rtol=1e-5)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)  # trains on from the restored state


def test_regularizers_under_mirrored_strategy(two_cpu_strategy):
    x, y = regression_data()
    keras.utils.set_random_seed(0)
    reg = SpectralNorm(factor=0.1, power_iterations=5)
    with two_cpu_strategy.scope():
        model = dense_model(kernel_regularizer=reg)
        model.compile(optimizer="sgd", loss="mse")
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    vector = np.asarray(reg.get_config()["state"]["hidden/kernel"])
    kernel = keras.ops.convert_to_numpy(model.get_layer("hidden").kernel).astype("float64")
    # the kept vector was updated across the replicated steps: it now gives sigma_max
    assert np.linalg.norm(kernel @ vector) > 0.97 * np.linalg.norm(kernel, 2)
    assert np.linalg.norm(vector) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("cls,kwargs,name", [
    (SpectralNorm, {"factor": -1.0}, "factor"),
    (SpectralNorm, {"power_iterations": 0}, "power_iterations"),
    (SpectralNorm, {"state": {"k": [np.nan]}}, r"state\['k'\]"),
    (SoftOrthogonality, {"mode": "diagonal"}, "mode"),
    (SRIP, {"power_iterations": -2}, "power_iterations"),
    (SRIP, {"factor": float("inf")}, "factor"),
])
def test_bad_arguments(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        cls(**kwargs)
