"""Layer-wise learning rates: equivalence with per-layer SGD, callbacks, matching, depth decay."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.optimizers import LayerwiseLearningRate, depth_decay_multipliers, match_multiplier
from tests.conftest import mirrored_two_cpus




def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    return x, (x @ rng.normal(size=(4, 1))).astype("float32")


def _model():
    keras.utils.set_random_seed(5)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, activation="tanh", name="body")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(hidden))


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, None), (0.9, 0.05)])
def test_factor_equals_training_that_layer_with_scaled_learning_rate(momentum, weight_decay):
    """f on a layer == SGD with learning rate f * lr on it (weight decay included)."""
    x, y = _data()
    lr, factor = 0.05, 0.3
    wrapped = _model()
    opt = LayerwiseLearningRate(
        keras.optimizers.SGD(lr, momentum=momentum, weight_decay=weight_decay), {"body/*": factor}
    )
    reference = _model()
    body_opt = keras.optimizers.SGD(factor * lr, momentum=momentum, weight_decay=weight_decay)
    head_opt = keras.optimizers.SGD(lr, momentum=momentum, weight_decay=weight_decay)
    body_vars = reference.get_layer("body").trainable_variables
    head_vars = reference.get_layer("head").trainable_variables

    def grads_of(model):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        return tape.gradient(loss, model.trainable_variables)

    @tf.function
    def step():
        opt.apply(grads_of(wrapped), wrapped.trainable_variables)
        g = grads_of(reference)
        body_opt.apply(g[:2], body_vars)
        head_opt.apply(g[2:], head_vars)

    for _ in range(25):
        step()
    for a, b in zip(wrapped.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert opt.factor_for(wrapped.get_layer("body").kernel) == factor
    assert opt.factor_for(wrapped.get_layer("head").kernel) == 1.0


def test_callback_changing_base_learning_rate_takes_effect():
    x, y = _data()
    model = _model()
    opt = LayerwiseLearningRate(keras.optimizers.SGD(0.1), {"body/*": 0.5, "head/*": 2.0})
    model.compile(optimizer=opt, loss="mse", jit_compile=True)
    snapshots = []
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 if epoch == 0 else 0.0)
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(model.get_weights()))
    start = model.get_weights()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[schedule, record])
    assert float(opt.learning_rate) == 0.0
    assert float(opt.inner_optimizer.learning_rate) == 0.0
    assert all(not np.allclose(a, b) for a, b in zip(start, snapshots[0]))  # epoch 0 moved every layer
    for a, b in zip(snapshots[0], snapshots[1]):  # learning rate 0 in epoch 1: nothing moves
        np.testing.assert_array_equal(a, b)


def test_schedule_on_inner_optimizer():
    x, y = _data()
    model = _model()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    opt = LayerwiseLearningRate(keras.optimizers.SGD(schedule), {"head/*": 0.0})
    model.compile(optimizer=opt, loss="mse")
    head = [w.numpy() for w in model.get_layer("head").weights]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(head, model.get_layer("head").weights):
        np.testing.assert_array_equal(a, b.numpy())  # factor 0 freezes the head
    assert float(opt.learning_rate) == pytest.approx(0.1 * 0.5**4)


def test_save_load_round_trip(tmp_path):
    x, y = _data()
    model = _model()
    model.compile(optimizer=LayerwiseLearningRate(keras.optimizers.Adam(0.01), {"body/*": 0.1}), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.multipliers == {"body/*": 0.1}
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_matching_rules():
    rules = {"head/*": 10.0, "*bias": 0.0}
    assert match_multiplier("head/kernel", rules) == 10.0
    assert match_multiplier("model/head/bias", rules) == 10.0  # first match wins
    assert match_multiplier("myhead/kernel", rules) == 1.0
    assert match_multiplier("body/bias", rules) == 0.0
    assert match_multiplier("body/kernel", rules, default=0.5) == 0.5


def test_depth_decay_multipliers():
    model = _model()
    assert depth_decay_multipliers(model, 0.8) == {"body/*": 0.8, "head/*": 1.0}
    got = depth_decay_multipliers(["embed", ["b1_attn", "b1_mlp"], "b2", "head"], 0.5)
    assert got == {"embed/*": 0.125, "b1_attn/*": 0.25, "b1_mlp/*": 0.25, "b2/*": 0.5, "head/*": 1.0}
    with pytest.raises(ValueError, match="Received: decay=0"):
        depth_decay_multipliers(model, 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"default": -1.0}, "Received: default="),
        ({"multipliers": {"body/*": -0.5}}, r"Received: multipliers\['body/\*'\]="),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LayerwiseLearningRate(keras.optimizers.SGD(0.1), **kwargs)
    with pytest.raises(TypeError, match="Received: multipliers="):
        LayerwiseLearningRate(keras.optimizers.SGD(0.1), multipliers=[("a", 1.0)])


def test_mirrored_strategy_equals_one_device():
    x, y = _data()

    def build():
        return LayerwiseLearningRate(keras.optimizers.SGD(0.05, momentum=0.9), {"body/*": 0.2})

    one = _model()
    one.compile(optimizer=build(), loss="mse")
    one.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    with mirrored_two_cpus().scope():
        two = _model()
        two.compile(optimizer=build(), loss="mse")
    two.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(one.weights, two.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_mixed_float16_with_loss_scaling():
    x, y = _data()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = _model()
        opt = LayerwiseLearningRate(keras.optimizers.Adam(0.01), {"head/*": 0.0})
        model.compile(optimizer=opt, loss="mse")
        head = [w.numpy() for w in model.get_layer("head").weights]
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert np.all(np.isfinite(history.history["loss"]))
    for a, b in zip(head, model.get_layer("head").weights):
        np.testing.assert_array_equal(a, b.numpy())


@pytest.mark.parametrize("default", [0.5, 0.0])
def test_inner_ema_is_refused(default):
    """Keras averages inside the inner step, before the wrapper scales it: the average (put in the
    model by ``finalize_variable_values``) would follow unscaled weights, and move a frozen one."""
    with pytest.raises(ValueError, match=r"`use_ema`.*SWA.*Received: optimizer.use_ema=True"):
        LayerwiseLearningRate(keras.optimizers.SGD(0.1, use_ema=True), default=default)
