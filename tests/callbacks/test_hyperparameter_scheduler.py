"""HyperparameterScheduler: the scheduled value really drives the compiled update.

Each test trains a bias-free linear model with MSE in ``model.fit`` (traced
``tf.function``) for 100 updates and replays the same updates in numpy, with a
line-by-line transcription of Keras's update rule using the scheduled value at
each step. A control run with the unscheduled value must differ, so the check
can fail.
"""

import copy

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import HyperparameterScheduler
from keras_trainkit.callbacks.hyperparameter_scheduler import HyperparameterVariable

N, FEATURES, BATCH, EPOCHS = 200, 3, 4, 2  # 50 updates per epoch, 100 updates in all
STEPS = (N // BATCH) * EPOCHS


def _data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, FEATURES)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.1).astype("float32")
    return x, y


def _model(optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _grad(w, xb, yb):
    # d/dw mean((xb w - yb)^2)
    return 2.0 / len(xb) * xb.T @ (xb @ w - yb)


def _batches():
    x, y = _data()
    for _ in range(EPOCHS):
        for start in range(0, N, BATCH):
            yield x[start:start + BATCH].astype(np.float64), y[start:start + BATCH].astype(np.float64)


def beta_1_schedule(step):
    return 0.95 - 0.4 * min(int(step), STEPS) / STEPS


def momentum_schedule(step):
    return 0.9 - 0.5 * min(int(step), STEPS) / STEPS


def decay_schedule(step):
    return 0.05 * (1.0 + np.cos(np.pi * min(int(step), STEPS) / STEPS))


def _numpy_adam(w, lr, beta_1_of, beta_2=0.999, eps=1e-7):
    """Keras's Adam: m, v moving averages; epsilon outside the square root ("epsilon hat")."""
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, (xb, yb) in enumerate(_batches()):
        b1 = beta_1_of(t)
        g = _grad(w, xb, yb)
        k = t + 1
        alpha = lr * np.sqrt(1 - beta_2**k) / (1 - b1**k)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - beta_2)
        w = w - m * alpha / (np.sqrt(v) + eps)
    return w


def _numpy_sgd(w, lr, momentum_of, weight_decay_of=lambda t: 0.0):
    """Keras's SGD: decoupled decay ``w -= w * wd * lr`` first, then ``v = mu v - lr g; w += v``."""
    velocity = np.zeros_like(w)
    for t, (xb, yb) in enumerate(_batches()):
        g = _grad(w, xb, yb)
        w = w - w * weight_decay_of(t) * lr
        mu = momentum_of(t)
        if mu:
            velocity = mu * velocity - lr * g
            w = w + velocity
        else:
            w = w - lr * g
    return w


def _fit(model, callback):
    x, y = _data()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[callback])
    return model.get_weights()[0].astype(np.float64)


def test_scheduled_beta_1_drives_adam_inside_fit():
    model = _model(keras.optimizers.Adam(0.05))
    w0 = model.get_weights()[0].astype(np.float64)
    w = _fit(model, HyperparameterScheduler("beta_1", beta_1_schedule))
    expected = _numpy_adam(w0, 0.05, beta_1_schedule)
    control = _numpy_adam(w0, 0.05, lambda t: 0.95)
    np.testing.assert_allclose(w, expected, rtol=2e-4, atol=1e-5)
    assert np.max(np.abs(control - expected)) > 1e-3  # the schedule matters
    assert isinstance(model.optimizer.beta_1, HyperparameterVariable)
    assert float(model.optimizer.beta_1) == pytest.approx(beta_1_schedule(STEPS - 1))


def test_scheduled_momentum_drives_sgd_inside_fit():
    model = _model(keras.optimizers.SGD(0.02, momentum=0.9))
    w0 = model.get_weights()[0].astype(np.float64)
    w = _fit(model, HyperparameterScheduler("momentum", momentum_schedule))
    expected = _numpy_sgd(w0, 0.02, momentum_schedule)
    control = _numpy_sgd(w0, 0.02, lambda t: 0.9)
    np.testing.assert_allclose(w, expected, rtol=2e-4, atol=1e-5)
    assert np.max(np.abs(control - expected)) > 1e-3


def test_weight_decay_schedule_from_none_with_a_learning_rate_schedule_object():
    schedule = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=STEPS)
    model = _model(keras.optimizers.SGD(0.02))  # weight_decay=None: starts at 0
    w0 = model.get_weights()[0].astype(np.float64)
    w = _fit(model, HyperparameterScheduler("weight_decay", schedule))
    cosine = lambda t: 0.05 * (1 + np.cos(np.pi * t / STEPS))  # noqa: E731  (CosineDecay closed form)
    expected = _numpy_sgd(w0, 0.02, lambda t: 0.0, cosine)
    control = _numpy_sgd(w0, 0.02, lambda t: 0.0)
    np.testing.assert_allclose(w, expected, rtol=2e-4, atol=1e-5)
    assert np.max(np.abs(control - expected)) > 1e-4


def test_a_plain_float_assignment_after_tracing_has_no_effect():
    """Why the variable is needed: Keras bakes the float into the traced step."""
    x, y = _data()
    model = _model(keras.optimizers.SGD(0.02, momentum=0.9))
    w0 = model.get_weights()[0].astype(np.float64)

    class SetFloat(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.model.optimizer.momentum = momentum_schedule(int(self.model.optimizer.iterations))

    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[SetFloat()])
    w = model.get_weights()[0].astype(np.float64)
    np.testing.assert_allclose(w, _numpy_sgd(w0, 0.02, lambda t: 0.9), rtol=2e-4, atol=1e-5)


def test_epoch_frequency_and_logs():
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(self.model.optimizer.beta_1))

    model = _model(keras.optimizers.Adam(0.01))
    x, y = _data()
    history = model.fit(x[:32], y[:32], batch_size=8, epochs=3, shuffle=False, verbose=0,
                        callbacks=[HyperparameterScheduler("beta_1", lambda e: 0.9 - 0.1 * e,
                                                           frequency="epoch"), Record()])
    np.testing.assert_allclose(seen, np.repeat([0.9, 0.8, 0.7], 4), rtol=1e-6)
    np.testing.assert_allclose(history.history["beta_1"], [0.9, 0.8, 0.7], rtol=1e-6)


def test_step_counts_updates_under_gradient_accumulation():
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(self.model.optimizer.momentum))

    model = _model(keras.optimizers.SGD(0.01, momentum=0.5, gradient_accumulation_steps=2))
    x, y = _data()
    model.fit(x[:32], y[:32], batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[HyperparameterScheduler("momentum", lambda t: 0.5 + 0.1 * t), Record()])
    # 8 micro-batches = 4 updates; each update's value is held for its 2 micro-batches.
    np.testing.assert_allclose(seen, np.repeat([0.5, 0.6, 0.7, 0.8], 2), rtol=1e-6)


def test_learning_rate_float_is_scheduled_and_schedule_is_refused():
    model = _model(keras.optimizers.SGD(0.1))
    x, y = _data()
    model.fit(x[:32], y[:32], batch_size=8, epochs=1, verbose=0,
              callbacks=[HyperparameterScheduler("learning_rate", lambda t: 0.01 * (t + 1))])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.04)
    scheduled = _model(keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 10)))
    with pytest.raises(ValueError, match="learning-rate schedule.*Received: hyperparameter="):
        scheduled.fit(x, y, epochs=1, verbose=0,
                      callbacks=[HyperparameterScheduler("learning_rate", lambda t: 0.1)])


def test_missing_or_non_float_hyperparameter_is_a_clear_error():
    x, y = _data()
    model = _model(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match=r"SGD has no `beta_1`.*Received: hyperparameter='beta_1'"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[HyperparameterScheduler("beta_1", lambda t: 0.9)])
    with pytest.raises(ValueError, match="float hyperparameter"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[HyperparameterScheduler("nesterov", lambda t: 1.0)])


def test_wrapped_optimizer_save_load_and_deepcopy(tmp_path):
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.02, momentum=0.9))
    model = _model(optimizer)
    callback = HyperparameterScheduler("momentum", momentum_schedule)
    _fit(model, callback)
    inner = model.optimizer.inner_optimizer
    assert isinstance(inner.momentum, HyperparameterVariable)
    assert len(inner.variables) == 1 + len(model.trainable_variables) + 1  # no extra variable
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.optimizer.inner_optimizer.momentum == pytest.approx(momentum_schedule(STEPS - 1))
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    clone = copy.deepcopy(callback)
    assert clone.get_config() == callback.get_config() and clone.model is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hyperparameter": "beta 1"}, "hyperparameter"),
        ({"frequency": "batch"}, "Received: frequency='batch'"),
        ({"verbose": 3}, "Received: verbose=3"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"hyperparameter": "momentum", "schedule": momentum_schedule, **kwargs}
    with pytest.raises(ValueError, match=match):
        HyperparameterScheduler(**arguments)
    with pytest.raises(TypeError, match="Received: schedule=0.5"):
        HyperparameterScheduler("momentum", 0.5)


def test_scheduled_momentum_under_mirrored_strategy(two_cpu_strategy):
    with two_cpu_strategy.scope():
        model = _model(keras.optimizers.SGD(0.02, momentum=0.9))
    w0 = model.get_weights()[0].astype(np.float64)
    w = _fit(model, HyperparameterScheduler("momentum", momentum_schedule))
    np.testing.assert_allclose(w, _numpy_sgd(w0, 0.02, momentum_schedule), rtol=2e-4, atol=1e-5)


def _lr_every_other_step(t):
    return 0.1 if int(t) % 2 == 0 else 0.0


@pytest.mark.parametrize("runner", ["fit", "trainer"])
def test_per_step_schedules_need_one_step_per_call(runner):
    """With steps_per_execution=2 the batch hooks run once per 2 steps: the rate of an
    odd step (0.0 here) was never set, and w ended 0.4096 = 0.8**4 instead of 0.64
    (refused now, before any step). Per epoch, or one step per call, is right."""
    import keras

    from keras_trainkit.training import Trainer

    x, y = np.ones((4, 1), "float32"), np.zeros((4, 1), "float32")

    def train(steps_per_execution, frequency="step"):
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False,
                                                                         kernel_initializer="ones")])
        scheduler = HyperparameterScheduler("learning_rate", _lr_every_other_step, frequency=frequency)
        kwargs = dict(batch_size=1, epochs=1, verbose=0, callbacks=[scheduler])
        if runner == "fit":
            model.compile(keras.optimizers.SGD(0.05), "mse", steps_per_execution=steps_per_execution)
            model.fit(x, y, shuffle=False, **kwargs)
        else:
            Trainer(model, keras.optimizers.SGD(0.05), "mse", shuffle=False,
                    steps_per_execution=steps_per_execution).fit(x, y, **kwargs)
        return float(model.layers[0].kernel.numpy()[0, 0])

    w = 1.0
    for t in range(4):  # the docstring's rule: lr(t) before step t; d(w^2)/dw = 2w
        w -= _lr_every_other_step(t) * 2 * w
    assert train(1) == pytest.approx(w)  # 0.64
    with pytest.raises(ValueError, match="steps_per_execution=2 a call runs 2 steps"):
        train(2)
    assert train(2, frequency="epoch") == pytest.approx(0.8 ** 4)  # epoch 0's rate, every step
