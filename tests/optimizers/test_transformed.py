"""TransformedOptimizer in model.fit: skipping NaN steps, save/load resume, XLA, tf.distribute, float16."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.optimizers import (
    AutoClip,
    ClipByGlobalNorm,
    GradientNoise,
    NonFiniteGradientError,
    SkipNonFinite,
    TransformedOptimizer,
)
from tests.conftest import LOGICAL_CPUS, mirrored_two_cpus
from tests.optimizers.skip_contract_checks import BatchRecorder

BATCH = 8




def _data(nan_batches=(), n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    for batch in nan_batches:
        x[batch * BATCH + 1, 2] = np.nan
    return x, y


def _model(seed=1):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="tanh", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_nan_gradient_step_is_skipped_in_fit(jit_compile):
    x, y = _data(nan_batches=[3])
    skip = SkipNonFinite(max_consecutive=3)
    model = _model()
    model.compile(TransformedOptimizer(keras.optimizers.Adam(0.01), [skip, ClipByGlobalNorm(1.0)]), "mse",
                  jit_compile=jit_compile)
    recorder = BatchRecorder()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
    before, after = recorder.weights[2], recorder.weights[3]
    for a, b in zip(before, after):
        assert np.all(np.isfinite(b))
        np.testing.assert_array_equal(a, b)
    for a, b in zip(recorder.slots[2], recorder.slots[3]):  # slots and iteration counter
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(recorder.weights[3], recorder.weights[4]))
    assert int(model.optimizer.iterations) == 7
    assert skip.get_statistics() == {"skipped_steps": 1.0, "consecutive_skips": 0.0}
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_consecutive_skips_stop_training_with_a_clear_error():
    x, y = _data(nan_batches=[2, 3, 4, 5])
    model = _model()
    model.compile(TransformedOptimizer(keras.optimizers.SGD(0.01), [SkipNonFinite(max_consecutive=3)]), "mse")
    recorder = BatchRecorder()
    with pytest.raises(tf.errors.InvalidArgumentError, match="SkipNonFinite: the gradients held NaN or Inf in 3"):
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
    assert len(recorder.weights) == 4  # batches 0..3 finished; the third NaN batch stopped training
    for a, b in zip(recorder.weights[1], model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_consecutive_skips_under_xla_stop_updates_and_raise_at_end_of_fit():
    # Three NaN batches (2, 3, 4) stop training; the finite batches 5..7 must not train on.
    x, y = _data(nan_batches=[2, 3, 4])
    model = _model()
    model.compile(TransformedOptimizer(keras.optimizers.SGD(0.01), [SkipNonFinite(max_consecutive=3)]), "mse",
                  jit_compile=True)
    recorder = BatchRecorder()
    with pytest.raises(NonFiniteGradientError, match="3 consecutive"):
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
    assert len(recorder.weights) == 8  # no callback: XLA cannot raise, so fit ran to its end
    assert int(model.optimizer.iterations) == 2
    for a, b in zip(recorder.weights[1], model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_skip_callback_stops_fit_at_the_batch_that_reaches_the_limit(jit_compile):
    x, y = _data(nan_batches=[2, 3, 4, 5, 6, 7])
    skip = SkipNonFinite(max_consecutive=3)
    model = _model()
    model.compile(TransformedOptimizer(keras.optimizers.SGD(0.01), [skip]), "mse", jit_compile=jit_compile)
    recorder = BatchRecorder()
    error = NonFiniteGradientError if jit_compile else tf.errors.InvalidArgumentError
    with pytest.raises(error, match="NaN or Inf in 3 consecutive"):
        model.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0,
                  callbacks=[recorder, skip.callback()])
    # Batch 4 reached the limit: with XLA its end is the first host check; without, the step fails.
    assert len(recorder.weights) == (5 if jit_compile else 4)
    assert int(model.optimizer.iterations) == 2
    for a, b in zip(recorder.weights[1], model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Stopped until reset(): the next fit fails at once; after reset() it trains on finite data.
    clean_x, clean_y = _data()
    with pytest.raises(error):
        model.fit(clean_x, clean_y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[skip.callback()])
    assert int(model.optimizer.iterations) == 2
    skip.reset()
    model.fit(clean_x, clean_y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[skip.callback()])
    assert int(model.optimizer.iterations) == 2 + len(clean_x) // BATCH


class _InfGradWhenFlagged(keras.layers.Layer):
    """Identity on ``h``; its gradient is Inf for a batch whose ``x[:, 3]`` holds a flag (> 100)."""

    def call(self, h, x):
        flagged = tf.reduce_max(x[:, 3]) > 100.0

        @tf.custom_gradient
        def ident(v):
            return v, lambda dy: dy * tf.where(flagged, np.inf, 1.0)

        return ident(h)


def _inf_gradients_from_batch_1():
    """Data and a model whose gradients are Inf (the loss finite) in batches 1-6."""
    x, y = _data()
    for batch in (1, 2, 3, 4, 5, 6):  # finite loss, Inf gradients: the gate's job, not on_nan's
        x[batch * BATCH, 3] = 1000.0
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    return x, y, keras.Model(inputs, _InfGradWhenFlagged()(keras.layers.Dense(1)(inputs), inputs))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_skip_non_finite_stops_the_trainer_promptly(jit_compile):
    from keras_trainkit.training import Trainer

    x, y, model = _inf_gradients_from_batch_1()
    skip = SkipNonFinite(max_consecutive=2)
    batches = []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)

    trainer = Trainer(model, keras.optimizers.SGD(1e-4), "mse", jit_compile=jit_compile, shuffle=False,
                      gradient_transforms=[skip])
    error = NonFiniteGradientError if jit_compile else tf.errors.InvalidArgumentError
    with pytest.raises(error, match="2 consecutive"):
        trainer.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[Count(), skip.callback()])
    # Batch 2 reached the limit: under XLA the callback raises at its end, without XLA the step fails.
    assert batches == ([0, 1, 2] if jit_compile else [0, 1])
    assert int(model.optimizer.iterations) == 1
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_trainer_raises_at_the_epoch_end_without_the_callback_under_xla():
    """Without ``skip.callback()`` the XLA Trainer still raises, at the end of the epoch."""
    from keras_trainkit.training import Trainer

    x, y, model = _inf_gradients_from_batch_1()
    skip = SkipNonFinite(max_consecutive=2)
    epochs_ended = []
    trainer = Trainer(model, keras.optimizers.SGD(1e-4), "mse", jit_compile=True, shuffle=False,
                      gradient_transforms=[skip])
    with pytest.raises(NonFiniteGradientError, match="2 consecutive"):
        trainer.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, callbacks=[
            keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: epochs_ended.append(e))])
    assert epochs_ended == []
    assert int(model.optimizer.iterations) == 1


def _stateful_optimizer():
    return TransformedOptimizer(
        keras.optimizers.Adam(0.01),
        [SkipNonFinite(), AutoClip(20.0, history_size=8), GradientNoise(0.01, seed=3), ClipByGlobalNorm(1.0)],
    )


def test_save_load_restores_transform_state_and_resumes_exactly(tmp_path):
    x, y = _data(nan_batches=[5])
    fit = dict(batch_size=BATCH, shuffle=False, verbose=0)
    uninterrupted = _model()
    uninterrupted.compile(_stateful_optimizer(), "mse")
    uninterrupted.fit(x, y, epochs=2, **fit)

    model = _model()
    model.compile(_stateful_optimizer(), "mse")
    model.fit(x, y, epochs=1, **fit)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    opt = loaded.optimizer
    assert type(opt) is TransformedOptimizer and isinstance(opt.inner_optimizer, keras.optimizers.Adam)
    assert [type(t).__name__ for t in opt.transforms] == ["SkipNonFinite", "AutoClip", "GradientNoise", "ClipByGlobalNorm"]
    for a, b in zip(model.optimizer.variables, opt.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert opt.transforms[0].get_statistics()["skipped_steps"] == 1.0
    assert int(opt.transforms[1].count) == 7 and int(opt.transforms[2].step) == 7
    loaded.fit(x, y, epochs=1, **fit)
    for a, b in zip(uninterrupted.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(uninterrupted.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_config_round_trip_by_names():
    opt = TransformedOptimizer("adam", ["skip_non_finite", {"class_name": "ClipByValue", "config": {"clip_value": 0.1}}])
    config = opt.get_config()
    rebuilt = TransformedOptimizer.from_config(config)
    assert [t.get_config() for t in rebuilt.transforms] == [t.get_config() for t in opt.transforms]
    assert isinstance(rebuilt.inner_optimizer, keras.optimizers.Adam)
    from keras_trainkit import optimizers

    assert type(optimizers.get("transformed_optimizer", optimizer="sgd")) is TransformedOptimizer


def test_statistics_for_logs():
    x, y = _data()
    model = _model()
    opt = TransformedOptimizer(keras.optimizers.SGD(0.1), [ClipByGlobalNorm(0.01, name="clip")])
    model.compile(opt, "mse")
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    stats = opt.get_statistics()
    assert set(stats) == {"clip/grad_norm", "clip/clip_fraction"}
    assert stats["clip/grad_norm"] > 0.01 and stats["clip/clip_fraction"] == 1.0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"transforms": ["no_such_transform"]}, ValueError, "Received: identifier='no_such_transform'"),
        ({"transforms": [ClipByGlobalNorm(1.0), ClipByGlobalNorm(2.0)]}, ValueError, "Received: transforms="),
        ({"transforms": 3}, TypeError, "Received: transforms=3"),
        ({"transforms": [3]}, TypeError, "Received: transforms=\\[3\\]"),
        ({"clipnorm": 1.0}, ValueError, "Received: clipnorm=1.0"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        TransformedOptimizer(keras.optimizers.SGD(0.1), **kwargs)


def test_mirrored_strategy_matches_single_device():
    two_cpu_strategy = mirrored_two_cpus()
    x, y = _data(nan_batches=[2])

    def run(strategy):
        with strategy.scope():
            model = _model()
            opt = TransformedOptimizer(
                keras.optimizers.Adam(0.01), [SkipNonFinite(), AutoClip(30.0, history_size=8), ClipByGlobalNorm(0.5)]
            )
            model.compile(opt, "mse")
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        return model

    single = run(tf.distribute.OneDeviceStrategy(LOGICAL_CPUS[0]))
    mirrored = run(two_cpu_strategy)
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    skip = mirrored.optimizer.transforms[0]
    assert int(np.asarray(skip.skipped_steps.value)) == 1
    assert int(np.asarray(mirrored.optimizer.iterations.value)) == 7


def test_mixed_float16_with_loss_scaling(tmp_path):
    x, y = _data()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = _model()
        model.compile(TransformedOptimizer(keras.optimizers.Adam(0.01), [SkipNonFinite(), ClipByGlobalNorm(1.0)]), "mse")
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        history = model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        clip = model.optimizer.inner_optimizer.transforms[1]
        # The transforms see unscaled gradients: the norm is a plain float32 gradient norm.
        assert 0.0 < clip.get_statistics()["grad_norm"] < 100.0
        model.save(tmp_path / "m.keras")
        loaded = keras.models.load_model(tmp_path / "m.keras")
        for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_tf_checkpoint_restores_transform_state(tmp_path):
    variables = [keras.Variable(np.ones((3, 2), "float32")), keras.Variable(np.zeros(2, "float32"))]

    def make():
        return TransformedOptimizer(keras.optimizers.Adam(0.1), [AutoClip(10.0, 4), GradientNoise(0.1, seed=1)])

    opt = make()
    for i in range(3):
        opt.apply([tf.ones((3, 2)) * i, tf.ones(2)], variables)
    prefix = tf.train.Checkpoint(optimizer=opt).save(str(tmp_path / "ckpt"))
    fresh = make()
    fresh.build(variables)
    tf.train.Checkpoint(optimizer=fresh).restore(prefix).assert_consumed()
    assert len(fresh.variables) == len(opt.variables)
    for a, b in zip(opt.variables, fresh.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
