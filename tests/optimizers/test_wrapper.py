"""OptimizerWrapper: delegation, state, serialization, hooks, fit/XLA and tf.distribute."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.optimizers import OptimizerWrapper
from tests.conftest import LOGICAL_CPUS, mirrored_two_cpus




def _data(n=64, features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = (np.tanh(x @ rng.normal(size=(features, 1)))).astype("float32")
    return x, y


def _model(seed=1):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(6, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def _fit(optimizer, epochs=2, jit_compile=False, model=None, **kwargs):
    model = model or _model()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False, **kwargs)
    return model


class HalfGradient(OptimizerWrapper):
    """Test subclass: halves the gradients (SGD(lr) on g/2 == SGD(lr/2) on g)."""

    def build(self, variables):
        super().build(variables)
        self.calls = self.add_variable((), dtype="int32", name="calls")

    def transform_gradients(self, grads, variables):
        return [None if g is None else g * 0.5 for g in grads]

    def after_inner_step(self, variables):
        self.calls.assign_add(1)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_identity_wrapper_matches_inner_in_fit(jit_compile):
    plain = _fit(keras.optimizers.Adam(0.01), jit_compile=jit_compile)
    wrapped = _fit(OptimizerWrapper(keras.optimizers.Adam(0.01)), jit_compile=jit_compile)
    for a, b in zip(plain.get_weights(), wrapped.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(wrapped.optimizer.iterations) == int(plain.optimizer.iterations) == 8


def test_hooks_transform_and_after_step():
    reference = _fit(keras.optimizers.SGD(0.05))
    opt = HalfGradient(keras.optimizers.SGD(0.1))
    wrapped = _fit(opt)
    for a, b in zip(reference.get_weights(), wrapped.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert int(opt.calls) == 8
    assert any(v is opt.calls for v in opt.variables)


def test_learning_rate_and_iterations_are_delegated():
    inner = keras.optimizers.SGD(0.1)
    opt = OptimizerWrapper(inner)
    assert float(opt.learning_rate) == pytest.approx(0.1)
    opt.learning_rate = 0.05
    assert float(inner.learning_rate) == pytest.approx(0.05)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    opt = OptimizerWrapper(keras.optimizers.SGD(schedule))
    model = _fit(opt, epochs=1)
    assert opt.iterations is opt.inner_optimizer.iterations
    assert int(opt.iterations) == 4
    assert float(opt.learning_rate) == pytest.approx(0.1 * 0.5**4)
    # The schedule drives the steps: compare with the bare optimizer.
    ref = _fit(keras.optimizers.SGD(schedule), epochs=1)
    for a, b in zip(ref.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_learning_rate_callback_reaches_inner():
    inner = keras.optimizers.SGD(0.1)
    callback = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.01)
    _fit(OptimizerWrapper(inner), epochs=1, callbacks=[callback])
    assert float(inner.learning_rate) == pytest.approx(0.01)


def test_variables_include_inner_slots_and_names_resolve():
    opt = OptimizerWrapper("adam")
    assert isinstance(opt.inner_optimizer, keras.optimizers.Adam)
    model = _model()
    opt.build(model.trainable_variables)
    inner_ids = {id(v) for v in opt.inner_optimizer.variables}
    assert inner_ids <= {id(v) for v in opt.variables}
    assert len(opt.variables) == len(opt._variables) + len(opt.inner_optimizer.variables)


def test_save_load_keeps_slots_and_resumes_exactly(tmp_path):
    x, y = _data()
    uninterrupted = _fit(HalfGradient(keras.optimizers.Adam(0.01)), epochs=2)

    model = _fit(HalfGradient(keras.optimizers.Adam(0.01)), epochs=1)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, custom_objects={"HalfGradient": HalfGradient})
    assert type(loaded.optimizer) is HalfGradient
    assert isinstance(loaded.optimizer.inner_optimizer, keras.optimizers.Adam)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(loaded.optimizer.iterations) == 4
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(uninterrupted.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_tf_checkpoint_restores_inner_slots(tmp_path):
    model = _fit(OptimizerWrapper(keras.optimizers.Adam(0.01)), epochs=1)
    saved = [np.asarray(v) for v in model.optimizer.variables]
    prefix = tf.train.Checkpoint(optimizer=model.optimizer).save(str(tmp_path / "ckpt"))
    fresh = OptimizerWrapper(keras.optimizers.Adam(0.01))
    fresh.build(model.trainable_variables)
    tf.train.Checkpoint(optimizer=fresh).restore(prefix).assert_consumed()
    for a, b in zip(saved, fresh.variables):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_config_round_trip_serializes_inner():
    opt = OptimizerWrapper(keras.optimizers.Adam(0.003, beta_1=0.8), name="wrapped")
    config = opt.get_config()
    assert config["optimizer"]["class_name"] == "Adam"
    rebuilt = OptimizerWrapper.from_config(config)
    assert rebuilt.name == "wrapped"
    assert rebuilt.inner_optimizer.beta_1 == pytest.approx(0.8)
    assert float(rebuilt.learning_rate) == pytest.approx(0.003)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(opt))
    assert type(again) is OptimizerWrapper


def test_loss_scale_factor_moves_to_wrapper():
    plain = _fit(keras.optimizers.SGD(0.1))
    opt = OptimizerWrapper(keras.optimizers.SGD(0.1, loss_scale_factor=128.0))
    assert opt.inner_optimizer.loss_scale_factor is None and opt.loss_scale_factor == 128.0
    scaled = _fit(opt)
    for a, b in zip(plain.get_weights(), scaled.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": 3}, "Received: optimizer=3"),
        ({"optimizer": "no_such_optimizer"}, "Received: identifier='no_such_optimizer'"),
        ({"optimizer": "sgd", "clipnorm": 1.0}, "Received: clipnorm=1.0"),
        ({"optimizer": "sgd", "learning_rate": 0.1}, "Received: learning_rate=0.1"),
        ({"optimizer": "sgd", "loss_scale_factor": -2.0}, "Received: loss_scale_factor=-2.0"),
        ({"optimizer": "sgd", "bogus": 1}, "Received: bogus=1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimizerWrapper(**kwargs)


def test_apply_inner_if_false_leaves_everything_unchanged():
    model = _model()
    opt = OptimizerWrapper(keras.optimizers.Adam(0.1))
    variables = model.trainable_variables
    grads = [tf.ones_like(v) for v in variables]
    opt.apply(grads, variables)
    before = [np.asarray(v) for v in variables] + [np.asarray(v) for v in opt.variables]

    @tf.function(jit_compile=True)
    def step(flag):
        opt.apply_inner_if(flag, grads, variables)

    step(tf.constant(False))
    after = [np.asarray(v) for v in variables] + [np.asarray(v) for v in opt.variables]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    step(tf.constant(True))
    assert int(opt.iterations) == 2


def _fit_strategy(optimizer_fn, strategy):
    x, y = _data()
    with strategy.scope():
        model = _model()
        model.compile(optimizer=optimizer_fn(), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    return model


def test_mirrored_strategy_matches_single_device():
    two_cpu_strategy = mirrored_two_cpus()
    def make():
        return HalfGradient(keras.optimizers.Adam(0.01))

    single = _fit_strategy(make, tf.distribute.OneDeviceStrategy(LOGICAL_CPUS[0]))
    mirrored = _fit_strategy(make, two_cpu_strategy)
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(np.asarray(mirrored.optimizer.iterations.value)) == 4
    assert int(np.asarray(mirrored.optimizer.calls.value)) == 4
