"""Regularizers, initializers and diagnostics: corners (expected values from numpy)."""

import keras
import numpy as np

from keras_trainkit.regularizers import SpectralNorm


def _sequential_with_spectral_norm(reg):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((6,)),
                             keras.layers.Dense(4, kernel_regularizer=reg, name="hidden"),
                             keras.layers.Dense(2, name="out")])


def test_spectral_norm_state_survives_sequential_save_load(tmp_path):
    # A Sequential model builds its kernel as "sequential.../hidden/kernel"; load_model
    # rebuilds it under another path. The saved vector must still be the one resumed from.
    reg = SpectralNorm(factor=1.0, power_iterations=1)
    model = _sequential_with_spectral_norm(reg)
    kernel = model.get_layer("hidden").kernel
    for _ in range(3):
        reg(kernel)
    (key, saved), = reg.get_config()["state"].items()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    restored = loaded.get_layer("hidden").kernel_regularizer
    w = keras.ops.convert_to_numpy(loaded.get_layer("hidden").kernel).astype("float64")
    u = np.asarray(saved, dtype="float64")
    v = w @ u
    v /= np.linalg.norm(v)
    u_next = w.T @ v
    u_next /= np.linalg.norm(u_next)
    expected = float(v @ w @ u_next) ** 2  # one power-iteration step from the saved u
    value = float(keras.ops.convert_to_numpy(restored(loaded.get_layer("hidden").kernel)))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # the state is saved once, under the loaded model's path
    assert len(restored.get_config()["state"]) == 1


def _tiny_dense_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="a"),
                              keras.layers.Dense(1, name="b")])
    model.set_weights([np.array([[1.0, -1.0], [0.5, 2.0]], "float32"), np.array([0.1, -0.2], "float32"),
                       np.array([[1.0], [-1.0]], "float32"), np.array([0.3], "float32")])
    return model


def test_gradient_check_never_checks_a_coordinate_twice():
    from keras_trainkit.diagnostics import gradient_check

    model = _tiny_dense_model()  # 2*2 + 2 + 2 + 1 = 9 parameters
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "float32")
    y = np.array([[1.0], [0.0], [2.0]], "float32")
    for seed in range(5):
        result = gradient_check(model, x, y, "mse", num_coordinates=20, seed=seed)
        pairs = [(c.weight.split("/")[-2] + "/" + c.weight.split("/")[-1], c.index)
                 for c in result.coordinates]
        expected = ({("a/kernel", (i, j)) for i in range(2) for j in range(2)}
                    | {("a/bias", (0,)), ("a/bias", (1,)), ("b/kernel", (0, 0)),
                       ("b/kernel", (1, 0)), ("b/bias", (0,))})
        assert len(pairs) == len(set(pairs)) == 9
        assert set(pairs) == expected


def test_diagnostics_validate_seed_before_any_work():
    import pytest

    from keras_trainkit.diagnostics import check_initialization, gradient_check

    model = _tiny_dense_model()
    x = np.ones((3, 2), "float32")
    y = np.ones((3, 1), "float32")
    with pytest.raises(ValueError, match=r"seed.*Received: seed=-1"):
        check_initialization(model, x, seed=-1)
    with pytest.raises(TypeError, match=r"Received: seed='a'"):
        check_initialization(model, x, seed="a")
    with pytest.raises(ValueError, match=r"seed.*Received: seed=-1"):
        gradient_check(model, x, y, "mse", seed=-1)


def test_check_initialization_validates_initialized_with():
    import pytest

    from keras_trainkit.diagnostics import check_initialization

    with pytest.raises(TypeError, match=r"initialized_with.*Received: initialized_with=1"):
        check_initialization(_tiny_dense_model(), np.ones((3, 2), "float32"), initialized_with=1)
