"""GradientClipping in model.fit with plain Keras optimizers: divergence prevented,
updates match a numpy transcription, logged grad_norm matches a separate tape."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.callbacks import GradientClipping


def _regression(n=64, scale=10.0, seed=0):
    rng = np.random.default_rng(seed)
    x = (scale * rng.normal(size=(n, 4))).astype("float32")
    w = rng.normal(size=(4, 1)).astype("float32")
    return x, (x @ w).astype("float32")


def _linear(optimizer, jit_compile=False):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    return model


def _deep_net(optimizer, jit_compile=False, activation="relu", depth=3):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((4,))]
    layers += [keras.layers.Dense(32, activation=activation) for _ in range(depth)]
    layers += [keras.layers.Dense(1)]
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("jit_compile", [False, True])
def test_diverging_run_stays_finite_and_learns(jit_compile):
    x, y = _regression()
    # A 3-layer ReLU network on inputs of scale 10 with SGD(0.005) blows up to NaN
    # (shown without XLA; the XLA run only checks the clipped side, to save compile time).
    if not jit_compile:
        plain = _deep_net(keras.optimizers.SGD(0.005), jit_compile)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            unclipped = plain.fit(x, y, batch_size=16, epochs=2, verbose=0).history["loss"]
        assert not np.isfinite(unclipped[-1]), unclipped
    model = _deep_net(keras.optimizers.SGD(0.005), jit_compile)
    original = model.optimizer
    clip = GradientClipping("global_norm", max_norm=1.0)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[clip]).history
    assert np.all(np.isfinite(history["loss"])) and history["loss"][-1] < history["loss"][0]
    assert np.all(np.array(history["grad_norm"]) > 1.0) and history["clip_fraction"][0] == 1.0
    assert model.optimizer is original  # put back after training


def _numpy_clipped_sgd(x, y, lr, max_norm, epochs, batch_size):
    """Mini-batch SGD (fixed order) on mean squared error with global-norm clipping, in numpy."""
    w, b = np.zeros((4, 1)), np.zeros(1)
    norms = []
    for step in range(epochs * (len(x) // batch_size)):
        start = (step % (len(x) // batch_size)) * batch_size
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        r = xb @ w + b - yb
        gw, gb = 2 * xb.T @ r / len(xb), 2 * r.mean(axis=0)
        norm = np.sqrt((gw ** 2).sum() + (gb ** 2).sum())
        scale = min(1.0, max_norm / norm)
        w, b = w - lr * scale * gw, b - lr * scale * gb
        norms.append(norm)
    return w, b, norms


@pytest.mark.parametrize("jit_compile", [False, True])
def test_updates_and_logged_norm_match_numpy(jit_compile):
    x, y = _regression(n=32, scale=3.0)
    model = _linear(keras.optimizers.SGD(0.01), jit_compile)
    clip = GradientClipping("global_norm", max_norm=15.0)

    class TapeNorm(keras.callbacks.Callback):
        """Compute the batch's global gradient norm separately, before the step."""

        def __init__(self):
            super().__init__()
            self.norms, self.logged = [], []

        def on_train_batch_begin(self, batch, logs=None):
            xb, yb = x[8 * batch:8 * batch + 8], y[8 * batch:8 * batch + 8]
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self.model(xb) - yb))
            grads = tape.gradient(loss, self.model.trainable_variables)
            self.norms.append(float(tf.linalg.global_norm(grads)))

        def on_train_batch_end(self, batch, logs=None):
            self.logged.append(logs["grad_norm"])

    probe = TapeNorm()
    model.fit(x, y, batch_size=8, epochs=10, verbose=0, shuffle=False, callbacks=[clip, probe])
    w, b, norms = _numpy_clipped_sgd(x.astype(np.float64), y.astype(np.float64), 0.01, 15.0, 10, 8)
    np.testing.assert_allclose(probe.logged, probe.norms, rtol=1e-5)
    np.testing.assert_allclose(probe.logged, norms, rtol=1e-4)
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.layers[0].bias.numpy(), b, rtol=1e-4, atol=1e-5)
    assert max(norms) > 15.0 and min(norms) < 15.0  # clipped at first, not always

    # Without the callback the next fit is plain SGD again (the train function was retraced).
    before = [v.numpy() for v in model.trainable_variables]
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    r = x @ before[0] + before[1] - y
    gw = 2 * x.T @ r / len(x)
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), before[0] - 0.01 * gw, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode,kwargs", [("value", {"clip_value": 0.1}), ("agc", {"clipping": 0.01}),
                                         ("autoclip", {"percentile": 50.0})])
def test_other_modes_with_adam_log_statistics(mode, kwargs):
    x, y = _regression(n=32, scale=3.0)
    model = _deep_net(keras.optimizers.Adam(1e-2), activation="tanh", depth=2)
    clip = GradientClipping(mode, **kwargs)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[clip]).history
    assert np.all(np.isfinite(history["loss"]))
    assert 0.0 <= history["clip_fraction"][-1] <= 1.0 and history["grad_norm"][-1] > 0
    if mode == "autoclip":
        assert "clip_threshold" in history
    assert isinstance(model.optimizer, keras.optimizers.Adam)


def test_checkpoint_written_mid_training_restores_optimizer_state(tmp_path):
    x, y = _regression(n=32, scale=1.0)
    model = _linear(keras.optimizers.Adam(1e-2))
    path = str(tmp_path / "mid.keras")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[GradientClipping("global_norm", max_norm=0.5), keras.callbacks.ModelCheckpoint(path)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a skipped optimizer load warns
        loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is keras.optimizers.Adam
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_two_callbacks_share_the_wrapper_and_config_round_trip():
    x, y = _regression(n=32, scale=3.0)
    model = _linear(keras.optimizers.SGD(0.01))
    first, second = GradientClipping("value", clip_value=1.0), GradientClipping("global_norm", max_norm=1.0)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[first, second])
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    clone = GradientClipping.from_config(second.get_config())
    assert clone.get_config() == second.get_config()


@pytest.mark.parametrize("kwargs,name", [({"mode": "norm"}, "mode"), ({"max_norm": 0.0}, "max_norm"),
                                         ({"clip_value": -1.0}, "clip_value"),
                                         ({"percentile": 101.0}, "percentile")])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        GradientClipping(**kwargs)


def test_custom_loop_protocol_and_warning_when_bypassed(caplog):
    """A loop that traces its step after on_train_begin, reading model.optimizer, is
    clipped; one that reuses a step traced with the original optimizer gets a warning."""
    x, y = _regression(n=16, scale=3.0)
    model = _linear(keras.optimizers.SGD(0.1))

    def make_step():
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x) - y))
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply(grads, model.trainable_variables)  # read at trace time
        return step

    clip = GradientClipping(max_norm=1e-3)
    clip.set_model(model)
    clip.on_train_begin()
    make_step()()  # traced now: uses the wrapper
    clip.on_train_batch_end(0, {})
    clip.on_train_end()
    step_norm = np.sqrt(sum(float(np.sum(v.numpy() ** 2)) for v in model.trainable_variables))
    assert step_norm == pytest.approx(1e-3 * 0.1, rel=1e-4)  # lr * max_norm: clipped

    stale = make_step()
    stale()  # traced with the original SGD
    clip.on_train_begin()
    with caplog.at_level("WARNING", logger="keras_trainkit.optimizers.control.attachment"):
        stale()
        clip.on_train_batch_end(0, {})
    clip.on_train_end()
    assert "did not use the wrapped optimizer" in caplog.text


def test_mirrored_strategy_clips_the_global_gradient(two_cpu_strategy):
    x, y = _regression(n=16, scale=3.0)
    with two_cpu_strategy.scope():
        model = _linear(keras.optimizers.SGD(0.01))
    clip = GradientClipping("global_norm", max_norm=1.0)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[clip])
    # one step on the whole batch from zero weights: the gradient of the mean loss over both replicas
    gw, gb = 2 * x.T @ (-y) / 16, 2 * (-y).mean(axis=0)
    norm = np.sqrt((gw ** 2).sum() + (gb ** 2).sum())
    assert history.history["grad_norm"][0] == pytest.approx(norm, rel=1e-4)
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), -0.01 * gw / norm, rtol=1e-4, atol=1e-7)
