"""Lookahead against optax.lookahead, plus fit / jit / save-load / distribution checks.

optax keeps the (fast, slow) pair as its parameters (``LookaheadParams``); our
model weights are the fast weights and the slow weights are optimizer slots.
Both use SGD with momentum 0.9 as the fast optimizer (Keras stores
``m = 0.9 m - lr g``, optax ``m = g + 0.9 m`` then ``-lr m``: the same steps).
"""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest
import tensorflow as tf

from keras_trainkit.optimizers import Lookahead
from tests.conftest import mirrored_two_cpus




def quadratic(n=10, seed=0):
    """0.5 (w - c)^T H (w - c), H with condition number 1e3."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    h = (q * np.logspace(0, 3, n)) @ q.T
    c = rng.normal(size=n)
    return rng.normal(size=n), lambda w: h @ (w - c)


def rosenbrock():
    def grad(p):
        x, y = p[0], p[1]
        return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])

    return np.array([-1.5, 2.0]), grad


@pytest.mark.parametrize(
    "problem, lr, sync_period, alpha",
    [(quadratic, 1e-3, 6, 0.5), (rosenbrock, 2e-4, 5, 0.8)],
)
def test_matches_optax_lookahead(problem, lr, sync_period, alpha):
    w0, grad = problem()
    var = keras.Variable(w0.astype("float32"))
    opt = Lookahead(keras.optimizers.SGD(lr, momentum=0.9), sync_period=sync_period, slow_step_size=alpha)
    step = tf.function(lambda g: opt.apply([g], [var]))

    ref = optax.lookahead(optax.sgd(lr, momentum=0.9), sync_period=sync_period, slow_step_size=alpha)
    params = optax.LookaheadParams.init_synced(jnp.asarray(w0, jnp.float32))
    state = ref.init(params)
    ref_update = jax.jit(lambda g, s, p: ref.update(g, s, p))

    for t in range(120):
        step(tf.constant(grad(var.numpy().astype("float64")), "float32"))
        g = jnp.asarray(grad(np.asarray(params.fast, "float64")), jnp.float32)
        updates, state = ref_update(g, state, params)
        params = optax.apply_updates(params, updates)
        expected = np.asarray(params.fast)
        error = np.abs(var.numpy() - expected).max() / np.abs(expected).max()
        assert error <= 1e-5, (t, error)
        if (t + 1) % sync_period == 0:
            np.testing.assert_allclose(opt._slow_weights[0].numpy(), np.asarray(params.slow), rtol=1e-5, atol=1e-6)


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, (x @ rng.normal(size=(4, 1))).astype("float32")


def _model():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh"), keras.layers.Dense(1)])


def test_fit_with_jit_compile_syncs_weights():
    x, y = _data()
    model = _model()
    opt = Lookahead(keras.optimizers.Adam(0.01), sync_period=4, slow_step_size=0.5)
    model.compile(optimizer=opt, loss="mse", jit_compile=True)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0)  # 12 steps: a sync at the end
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert int(opt.iterations) == 12
    for w, slow in zip(model.trainable_variables, opt._slow_weights):
        np.testing.assert_array_equal(w.numpy(), slow.numpy())


def test_wrapping_an_optimizer_that_has_stepped_starts_the_slow_weights_at_the_current_weights():
    """Before, the slow weights were set only at inner ``iterations == 0``: around an SGD that
    had taken 8 steps they stayed zero, and the first sync halved the weights."""
    x, y = _data()
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)  # 8 steps
    start = [w.numpy() for w in model.trainable_variables]
    reference = _model()  # plain SGD (no state) from the same weights: the fast weights
    reference.set_weights(model.get_weights())
    reference.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    reference.fit(x[:32], y[:32], batch_size=16, epochs=1, verbose=0, shuffle=False)  # 2 steps
    model.compile(optimizer=Lookahead(model.optimizer, sync_period=2, slow_step_size=0.5), loss="mse")
    model.fit(x[:32], y[:32], batch_size=16, epochs=1, verbose=0, shuffle=False)  # 2 steps: iterations 10, a sync
    for w, w0, fast in zip(model.trainable_variables, start, reference.trainable_variables):
        np.testing.assert_allclose(w.numpy(), w0 + 0.5 * (fast.numpy() - w0), rtol=1e-5, atol=1e-6)


def test_a_state_saved_before_the_first_step_by_an_older_version_still_starts_the_slow_weights():
    """Older versions marked "not started" by the inner count alone; their ``synced_at`` was 0."""
    var = keras.Variable(np.array([2.0, -4.0], "float32"))
    opt = Lookahead(keras.optimizers.SGD(0.5), sync_period=1, slow_step_size=0.5)
    opt.build([var])
    opt._synced_at.assign(0)  # as loaded from such a file
    opt.apply([keras.ops.convert_to_tensor(np.array([1.0, 1.0], "float32"))], [var])
    # fast: w0 - 0.5 * g = [1.5, -4.5]; slow from w0: w0 + 0.5 * (fast - w0)
    np.testing.assert_allclose(var.numpy(), [1.75, -4.25])


def test_save_load_keeps_slow_weights_and_resumes(tmp_path):
    x, y = _data()
    model = _model()
    model.compile(optimizer=Lookahead(keras.optimizers.Adam(0.01), sync_period=3), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)  # 4 steps: slow != fast
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.optimizer, Lookahead)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_mirrored_strategy_equals_one_device():
    x, y = _data()
    one = _model()
    one.compile(optimizer=Lookahead(keras.optimizers.SGD(0.05, momentum=0.9), sync_period=3), loss="mse")
    one.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    with mirrored_two_cpus().scope():
        two = _model()
        two.compile(optimizer=Lookahead(keras.optimizers.SGD(0.05, momentum=0.9), sync_period=3), loss="mse")
    two.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(one.weights, two.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"sync_period": 0}, "sync_period"),
        ({"sync_period": -3}, "sync_period"),
        ({"slow_step_size": 0.0}, "slow_step_size"),
        ({"slow_step_size": 1.5}, "slow_step_size"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        Lookahead(keras.optimizers.SGD(0.1), **kwargs)


def test_slow_step_size_one_and_period_one_is_the_inner_optimizer():
    w0, grad = quadratic()
    a = keras.Variable(w0.astype("float32"))
    b = keras.Variable(w0.astype("float32"))
    la = Lookahead(keras.optimizers.SGD(1e-3, momentum=0.9), sync_period=1, slow_step_size=1.0)
    sgd = keras.optimizers.SGD(1e-3, momentum=0.9)
    for _ in range(10):
        la.apply([tf.constant(grad(a.numpy()), "float32")], [a])
        sgd.apply([tf.constant(grad(b.numpy()), "float32")], [b])
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_mixed_float16_with_loss_scaling():
    x, y = _data()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = _model()
        model.compile(optimizer=Lookahead(keras.optimizers.Adam(0.01), sync_period=2), loss="mse")
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.all(np.isfinite(history.history["loss"]))
    slow = model.optimizer.inner_optimizer._slow_weights
    for w, s in zip(model.trainable_variables, slow):  # 8 steps: synced at the end
        np.testing.assert_array_equal(w.numpy(), s.numpy())


@pytest.mark.parametrize("inner", [
    lambda: keras.optimizers.SGD(0.1, use_ema=True),
    lambda: {"class_name": "Adam", "config": {"learning_rate": 0.01, "use_ema": True}},
])
def test_an_inner_ema_is_refused(inner):
    """Keras averages inside the fast step, before a synchronization pulls the weights to the
    slow ones: the average (which ``finalize_variable_values`` puts in the model) would
    follow fast weights the model never had at that step's end."""
    with pytest.raises(ValueError, match=r"Lookahead must not set `use_ema`.*SWA.*Received: optimizer.use_ema=True"):
        Lookahead(inner())
