"""JacobianPenalty, InputGradientPenalty and PenalizedModel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.regularizers import InputGradientPenalty, JacobianPenalty, PenalizedModel, penalties
from tests.conformance.fit_helpers import dense_model, regression_data

RNG = np.random.default_rng(0)


def _tanh_net(dtype="float32"):
    net = keras.Sequential([keras.Input((5,), dtype=dtype),
                            keras.layers.Dense(6, activation="tanh", dtype=dtype),
                            keras.layers.Dense(3, dtype=dtype)])
    for w in net.weights:
        w.assign(RNG.normal(size=w.shape).astype(dtype))
    return net


def _exact_jacobian_sq_norm(net, x):
    # numpy, by hand: J_i = W1 diag(1 - tanh^2(x_i W1 + b1)) W2  (input x output layout)
    w1, b1, w2, _ = (keras.ops.convert_to_numpy(w).astype("float64") for w in net.weights)
    h = np.tanh(x @ w1 + b1)
    norms = []
    for i in range(len(x)):
        jac = w1 @ np.diag(1 - h[i] ** 2) @ w2
        norms.append(np.sum(jac ** 2))
    return np.mean(norms)


@pytest.mark.parametrize("projection", ["sphere", "gaussian"])
def test_jacobian_estimate_is_unbiased(projection):
    tf.random.set_seed(0)
    net = _tanh_net()
    x = RNG.normal(size=(4, 5)).astype("float32")
    exact = _exact_jacobian_sq_norm(net, x.astype("float64"))
    penalty = JacobianPenalty(factor=1.0, num_projections=2, projection=projection)
    # Each row draws its own projections: 5000 copies of the batch x 2 = 10^4 per example.
    estimate = float(penalty(net, np.tile(x, (5000, 1))))
    assert abs(estimate / exact - 1) < 0.05, (estimate, exact)
    one = JacobianPenalty(factor=1.0)
    singles = [float(one(net, x)) for _ in range(5)]
    assert np.std(singles) > 0  # a single projection is random, the mean is what is unbiased


def test_jacobian_penalty_gradient_reaches_weights_and_matches_finite_differences():
    net = _tanh_net("float64")
    x = tf.constant(RNG.normal(size=(3, 5)))
    penalty = JacobianPenalty(factor=0.5, num_projections=2, projection="gaussian", seed=7)
    start = keras.ops.convert_to_numpy(penalty.seed_generator.state).copy()

    def value():
        penalty.seed_generator.state.assign(start)  # the same projections at every evaluation
        return penalty(net, x)

    kernel = net.layers[0].kernel
    with tf.GradientTape() as tape:  # the caller's outer tape
        v = value()
    grad = tape.gradient(v, kernel).numpy()
    assert np.abs(grad).max() > 0
    base = keras.ops.convert_to_numpy(kernel).copy()
    h = 1e-6
    for index in [(0, 0), (2, 3), (4, 5)]:
        plus, minus = base.copy(), base.copy()
        plus[index] += h
        minus[index] -= h
        kernel.assign(plus)
        f_plus = float(value())
        kernel.assign(minus)
        f_minus = float(value())
        kernel.assign(base)
        assert grad[index] == pytest.approx((f_plus - f_minus) / (2 * h), rel=1e-6, abs=1e-9)


def test_input_gradient_penalty_value_and_gradient_vs_numpy():
    # Linear model, MSE: l_i = mean_j (x_i W + b - y_i)_j^2, d l_i / d x_i = (2 / C) W r_i.
    net = keras.Sequential([keras.Input((4,), dtype="float64"), keras.layers.Dense(3, dtype="float64")])
    w = RNG.normal(size=(4, 3))
    b = RNG.normal(size=3)
    net.layers[0].kernel.assign(w)
    net.layers[0].bias.assign(b)
    x = RNG.normal(size=(6, 4))
    y = RNG.normal(size=(6, 3))

    def numpy_penalty(w):
        residual = x @ w + b - y
        grads = (2 / 3) * residual @ w.T
        return 0.2 * np.mean(np.sum(grads ** 2, axis=1))

    penalty = InputGradientPenalty(factor=0.2, loss="mse")
    with tf.GradientTape() as tape:
        value = penalty(net, tf.constant(x), tf.constant(y))
    grad = tape.gradient(value, net.layers[0].kernel).numpy()
    assert float(value) == pytest.approx(numpy_penalty(w), rel=1e-10)
    h = 1e-6
    fd = np.zeros_like(w)
    for index in np.ndindex(w.shape):
        plus, minus = w.copy(), w.copy()
        plus[index] += h
        minus[index] -= h
        fd[index] = (numpy_penalty(plus) - numpy_penalty(minus)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="Received: y=None"):
        penalty(net, tf.constant(x))


def test_penalized_model_adds_penalty_in_fit_and_reloads(tmp_path):
    x, y = regression_data()
    keras.utils.set_random_seed(0)
    plain = dense_model()
    keras.utils.set_random_seed(0)
    net = dense_model()
    strong = PenalizedModel(net, [JacobianPenalty(factor=1.0, num_projections=4)])
    for model in (plain, strong):
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    plain.fit(x, y, batch_size=16, epochs=5, verbose=0)
    history = strong.fit(x, y, batch_size=16, epochs=5, verbose=0)
    assert "penalty" in history.history and history.history["penalty"][-1] > 0
    # the penalty shrinks the Jacobian: the penalized model ends with a smaller ||J||_F^2
    exact = JacobianPenalty(factor=1.0, num_projections=200)
    assert float(exact(net, x)) < float(exact(plain, x))
    strong.save(tmp_path / "p.keras")
    loaded = keras.models.load_model(tmp_path / "p.keras")
    assert isinstance(loaded, PenalizedModel)
    assert loaded.penalties[0].get_config() == strong.penalties[0].get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), strong.predict(x, verbose=0), rtol=1e-6)


def test_penalized_model_under_mirrored_strategy(two_cpu_strategy):
    x, y = regression_data()
    with two_cpu_strategy.scope():
        model = PenalizedModel(dense_model(), ["jacobian_penalty", InputGradientPenalty(loss="mse")])
        model.compile(optimizer="sgd", loss="mse")
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["penalty"][0])


def test_get_and_bad_arguments():
    assert isinstance(penalties.get("jacobian"), JacobianPenalty)
    assert isinstance(penalties.get("double_backprop", factor=0.5), InputGradientPenalty)
    with pytest.raises(ValueError, match="Received: identifier='nope'"):
        penalties.get("nope")
    with pytest.raises(ValueError, match="Received: factor=-1.0"):
        JacobianPenalty(factor=-1.0)
    with pytest.raises(ValueError, match="Received: num_projections=0"):
        JacobianPenalty(num_projections=0)
    with pytest.raises(ValueError, match="Received: projection='rademacher'"):
        JacobianPenalty(projection="rademacher")
    with pytest.raises(ValueError, match="Received: loss='no_such_loss'"):
        InputGradientPenalty(loss="no_such_loss")
    with pytest.raises(TypeError, match="Received: model="):
        PenalizedModel("not a model", [])


def test_penalties_as_trainer_hooks():
    from keras_trainkit.training import Trainer

    x, y = regression_data()
    weights = {}
    for name, hooks in (("plain", None), ("penalized", [JacobianPenalty(factor=1.0, num_projections=2),
                                                        InputGradientPenalty(factor=1.0, loss="mse")])):
        keras.utils.set_random_seed(0)
        model = dense_model(kernel_regularizer=None)
        trainer = Trainer(model, keras.optimizers.SGD(0.05), "mse", jit_compile=False, penalties=hooks,
                          shuffle=False)
        history = trainer.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        weights[name] = model.get_layer("hidden").kernel.numpy()
    # the penalties' gradients reached the weights through the Trainer's tape
    assert not np.allclose(weights["plain"], weights["penalized"])


_DETERMINISTIC_SCRIPT = """
import keras, numpy as np, tensorflow as tf
tf.config.experimental.enable_op_determinism()
from keras_trainkit.regularizers import JacobianPenalty, PenalizedModel
from keras_trainkit.training import Trainer
x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
y = x[:, :2].copy()
def net():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(2)])
model = PenalizedModel(net(), [JacobianPenalty(0.1, seed=3)])
model.compile(optimizer="sgd", loss="mse")
first = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history["penalty"][0]
trainer = Trainer(net(), "sgd", "mse", shuffle=False, penalties=[JacobianPenalty(0.1, seed=3)])
second = trainer.fit(x, y, batch_size=8, epochs=1, verbose=0).history["loss"][0]
print("OK", first, second)
"""


def test_jacobian_penalty_runs_under_op_determinism():
    """Issue 18: unseeded tf.random.normal raised "Random ops require a seed" in both fits."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", _DETERMINISTIC_SCRIPT], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


def test_jacobian_penalty_seed_repeats_its_projections_and_is_saved():
    net = _tanh_net()
    x = RNG.normal(size=(4, 5)).astype("float32")
    first = JacobianPenalty(factor=1.0, seed=11)
    again = JacobianPenalty.from_config(first.get_config())
    assert first.get_config()["seed"] == 11
    draws = [float(first(net, x)) for _ in range(3)]
    assert [float(again(net, x)) for _ in range(3)] == draws
    assert len(set(draws)) == 3  # the generator advances: a new projection every call
    with pytest.raises(ValueError, match="Received: seed=-1"):
        JacobianPenalty(seed=-1)
