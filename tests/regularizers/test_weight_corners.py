"""SpectralNorm after a zero kernel, SRIP on float16 kernels (references: numpy)."""

import keras
import numpy as np
import tensorflow as tf

from keras_trainkit.regularizers import SRIP, SpectralNorm


def test_spectral_norm_recovers_after_a_zero_kernel():
    # kernel_initializer="zeros": the first call sees W = 0. The power iteration must
    # still find sigma(W) once W changes (it stayed at u = 0, sigma = 0, for ever).
    reg = SpectralNorm(factor=1.0, squared=False)
    kernel = keras.Variable(np.zeros((5, 3), "float32"), name="kernel")
    assert float(keras.ops.convert_to_numpy(reg(kernel))) == 0.0
    w = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    kernel.assign(w)
    for _ in range(30):
        with tf.GradientTape():  # as in a training step: u advances only there
            value = float(keras.ops.convert_to_numpy(reg(kernel)))
    expected = np.linalg.svd(w.astype("float64"), compute_uv=False)[0]
    np.testing.assert_allclose(value, expected, rtol=1e-4)


def test_spectral_norm_in_fit_with_zero_initialized_kernel():
    keras.utils.set_random_seed(0)
    reg = SpectralNorm(factor=1e-3, squared=False)
    layer = keras.layers.Dense(3, kernel_initializer="zeros", kernel_regularizer=reg)
    model = keras.Sequential([keras.Input((4,)), layer])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.random.default_rng(1).normal(size=(32, 4)).astype("float32")
    model.fit(x, x[:, :3] * 2.0, epochs=20, batch_size=8, verbose=0)
    w = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
    expected = np.linalg.svd(w, compute_uv=False)[0]
    assert expected > 0.5  # the kernel has moved away from zero
    value = float(keras.ops.convert_to_numpy(reg.sigma(layer.kernel, update=False)))
    np.testing.assert_allclose(value, expected, rtol=1e-2)


def _srip_reference(w):
    """Largest |eigenvalue| of the smaller Gram matrix minus I, in float64."""
    w = w.reshape(-1, w.shape[-1]).astype("float64")
    gram = w.T @ w if w.shape[1] <= w.shape[0] else w @ w.T
    return np.abs(np.linalg.eigvalsh(gram - np.eye(gram.shape[0]))).max()


def test_srip_float16_orthogonal_kernel_is_finite_and_right():
    # Near an orthogonal W, the residual's squares underflow float16: value and
    # gradient were NaN (a NaN gradient corrupts the weights on the first step).
    for shape in [(64, 32), (3, 3, 16, 16)]:
        w = keras.ops.convert_to_numpy(keras.initializers.Orthogonal(seed=0)(shape))
        kernel = keras.Variable(w, dtype="float16", name="kernel")
        with tf.GradientTape() as tape:
            value = SRIP(factor=1.0, power_iterations=200)(kernel)
        gradient = tape.gradient(value, kernel).numpy()
        assert value.dtype == tf.float16
        expected = _srip_reference(kernel.numpy())
        np.testing.assert_allclose(float(value), expected, rtol=1e-2)
        assert np.all(np.isfinite(gradient))


def _penalized_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(5, kernel_regularizer=SpectralNorm(0.5), name="sn"),
                              keras.layers.Dense(2, kernel_regularizer="l2", name="l2")], name="net")
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


def test_state_variables_lists_u_made_as_the_first_step_would_make_it():
    """``regularizers.state_variables``: what checkpoints and ``training_state_variables``
    hold beside the model's variables. Made before any step, ``u`` is the vector the first
    step would have made (so training is unchanged), and it is one of the state variables."""
    from keras_trainkit.optimizers import control
    from keras_trainkit.regularizers import state_variables

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    made_first, untouched = _penalized_model(), _penalized_model()
    state = state_variables(made_first)
    assert [v.shape for v in state] == [(5,)]
    assert any(v is state[0] for v in control.training_state_variables(made_first))
    assert state_variables(made_first)[0] is state[0]  # made once
    a = made_first.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"]
    b = untouched.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"]
    assert a == b
    np.testing.assert_array_equal(state[0].numpy(), state_variables(untouched)[0].numpy())
