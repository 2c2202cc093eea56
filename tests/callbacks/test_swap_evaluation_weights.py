"""Evaluation at Schedule-Free's average x: SwapEvaluationWeights in model.fit, the Trainer's hook,
end-of-fit swap, exact resume, BatchNorm statistics at x, save/load, XLA, MirroredStrategy, float16."""

import logging

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import SwapEvaluationWeights
from keras_trainkit.optimizers import ScheduleFree, find_evaluation_weights
from keras_trainkit.training import Trainer
from tests.conftest import mirrored_two_cpus

BATCH = 16


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x @ rng.normal(size=(4, 1)) + 0.5).astype("float32")


def _model(batch_norm=True):
    keras.utils.set_random_seed(1)
    layers = [keras.Input((4,)), keras.layers.Dense(8, activation="tanh", name="hidden")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(name="bn"))
    return keras.Sequential(layers + [keras.layers.Dense(1, name="out")])


def _schedule_free(lr=0.05):
    return ScheduleFree(keras.optimizers.SGD(lr))


def _fit(model, epochs, callbacks=(), validation=True, **compile_kwargs):
    x, y = _data()
    if not model.compiled:
        model.compile(_schedule_free(), "mse", **compile_kwargs)
    return model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
                     validation_data=_data(32, seed=1) if validation else None, callbacks=list(callbacks))


def _arrays(variables):
    return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in variables]


def _assert_equal_lists(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)


def _batch_norm_statistics_at(model, x, batch_size):
    """Independent: mean over batches of each batch's mean and (biased) variance at the BN input."""
    features = keras.Model(model.inputs, model.get_layer("bn").input)
    batches = [features.predict(x[i:i + batch_size], verbose=0) for i in range(0, len(x), batch_size)]
    return np.mean([b.mean(axis=0) for b in batches], axis=0), np.mean([b.var(axis=0) for b in batches], axis=0)


def test_validation_is_at_x_training_is_unchanged_and_batch_norm_is_recomputed_at_x():
    x, _ = _data()
    plain = _model()
    history_plain = _fit(plain, 3)
    swapped = _model()
    history = _fit(swapped, 3, [SwapEvaluationWeights(bn_data=x, bn_batch_size=BATCH)])
    assert history.history["loss"] == history_plain.history["loss"]
    _assert_equal_lists(_arrays(swapped.trainable_variables), _arrays(plain.trainable_variables))
    _assert_equal_lists(_arrays(swapped.optimizer.variables), _arrays(plain.optimizer.variables))
    assert swapped.optimizer.holds_evaluation_weights  # finalize_variable_values put x in
    # BatchNorm statistics at x over bn_data (on_train_end), checked independently.
    mean, variance = _batch_norm_statistics_at(swapped, x, BATCH)
    bn = swapped.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), variance, rtol=1e-5, atol=1e-6)
    # The last validation ran at x with these statistics; without the callback it ran at y.
    x_val, y_val = _data(32, seed=1)
    at_x = swapped.evaluate(x_val, y_val, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(at_x, rel=1e-5)
    assert abs(history_plain.history["val_loss"][-1] - at_x) > 1e-4


def test_resume_is_exact_with_the_callback_and_off_by_one_gradient_without():
    x, _ = _data()

    def weights(epochs_per_fit, callbacks):
        model = _model(batch_norm=False)
        for epochs in epochs_per_fit:
            _fit(model, epochs, callbacks, validation=False)
        return _arrays(model.trainable_variables)

    uninterrupted = weights([2], [])
    _assert_equal_lists(weights([1, 1], [SwapEvaluationWeights()]), uninterrupted)
    # Without the callback y comes back inside the first update, whose gradient was taken at x.
    without = weights([1, 1], [])
    error = max(np.abs(a - b).max() for a, b in zip(without, uninterrupted))
    assert 1e-7 < error < 1e-2


def test_save_load_keeps_x_in_the_weights_and_z_in_the_state(tmp_path):
    model = _model()
    x, y = _data()
    _fit(model, 2, [SwapEvaluationWeights(bn_data=x)])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is ScheduleFree and loaded.optimizer.holds_evaluation_weights
    _assert_equal_lists(_arrays(loaded.optimizer.variables), _arrays(model.optimizer.variables))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for net in (model, loaded):
        _fit(net, 1, [SwapEvaluationWeights(bn_data=x)])
    _assert_equal_lists(_arrays(loaded.variables), _arrays(model.variables))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_save_mid_training_load_and_continue_equals_uninterrupted(tmp_path, jit_compile):
    """fit(2) with x saved in the model at each epoch end, save, load, fit(1) == fit(3), bit for bit."""
    x, _ = _data()

    def compiled():
        model = _model()
        model.compile(_schedule_free(), "mse", jit_compile=jit_compile)
        return model

    uninterrupted = compiled()
    _fit(uninterrupted, 3, [SwapEvaluationWeights(bn_data=x)])
    first = compiled()
    _fit(first, 2, [SwapEvaluationWeights(bn_data=x, swap_on_epoch=True)])
    assert first.optimizer.holds_evaluation_weights  # what was saved is x
    first.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    _fit(loaded, 1, [SwapEvaluationWeights(bn_data=x)])
    _assert_equal_lists(_arrays(loaded.trainable_variables), _arrays(uninterrupted.trainable_variables))
    _assert_equal_lists(_arrays(loaded.optimizer.variables), _arrays(uninterrupted.optimizer.variables))


def test_trainer_validates_evaluates_and_predicts_at_x_and_resumes_exactly():
    x, y = _data()
    x_val, y_val = _data(32, seed=1)
    model = _model(batch_norm=False)
    trainer = Trainer(model, _schedule_free(), "mse", shuffle=False, jit_compile=False)
    history = trainer.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, validation_data=(x_val, y_val))
    optimizer = trainer.optimizer
    assert optimizer.holds_evaluation_weights
    at_x = _arrays(model.trainable_variables)
    expected = keras.ops.convert_to_numpy(keras.losses.mean_squared_error(y_val, model.predict(x_val, verbose=0)))
    assert history.history["val_loss"][-1] == pytest.approx(float(np.mean(expected)), rel=1e-5)
    # With y in the model, evaluate and predict still run at x and put y back exactly.
    optimizer.swap_to_training_weights()
    at_y = _arrays(model.trainable_variables)
    assert trainer.evaluate(x_val, y_val, verbose=0) == pytest.approx(float(np.mean(expected)), rel=1e-5)
    np.testing.assert_allclose(trainer.predict(x_val), model.predict(x_val, verbose=0) * 0 + trainer.predict(x_val))
    _assert_equal_lists(_arrays(model.trainable_variables), at_y)
    with trainer.evaluation_weights():
        _assert_equal_lists(_arrays(model.trainable_variables), at_x)
    # fit(1) + fit(1) is fit(2), in the Trainer without any callback.
    again = Trainer(_model(batch_norm=False), _schedule_free(), "mse", shuffle=False, jit_compile=False)
    again.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    again.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    _assert_equal_lists(_arrays(again.model.trainable_variables), at_x)


def test_trainer_recomputes_batch_norm_at_x_over_its_training_data():
    x, y = _data()
    model = _model()
    trainer = Trainer(model, _schedule_free(), "mse", shuffle=False, jit_compile=False)
    trainer.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
    mean, variance = _batch_norm_statistics_at(model, x, BATCH)
    np.testing.assert_allclose(model.get_layer("bn").moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.get_layer("bn").moving_variance.numpy(), variance, rtol=1e-5, atol=1e-6)


def test_keras_schedule_free_adamw_is_validated_at_x_and_keeps_y():
    def run(callbacks):
        model = _model(batch_norm=False)
        model.compile(keras.optimizers.ScheduleFreeAdamW(0.01), "mse")
        return model, _fit(model, 2, callbacks)

    plain, _ = run([])
    model, history = run([SwapEvaluationWeights()])
    _assert_equal_lists(_arrays(model.trainable_variables), _arrays(plain.trainable_variables))  # y kept
    source = find_evaluation_weights(model.optimizer)
    assert not source.holds_evaluation_weights
    beta = 0.9
    x_expected = [(w - (1 - beta) * z) / beta for w, z in zip(
        _arrays(model.trainable_variables),
        [keras.ops.convert_to_numpy(source.optimizer.variables[i]) for i in _momentum_slots(source.optimizer)])]
    for got, want in zip(source.evaluation_weights(model.trainable_variables), x_expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-5, atol=1e-6)
    x_val, y_val = _data(32, seed=1)
    model.set_weights([np.asarray(w) for w in x_expected])
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(x_val, y_val, verbose=0), rel=1e-5)


def _momentum_slots(optimizer):
    """Indices of Keras ScheduleFreeAdamW's momentum (z) slots in ``optimizer.variables``, by name."""
    return [i for i, v in enumerate(optimizer.variables) if "momentum" in v.name]


def test_swap_on_epoch_holds_x_for_the_callbacks_after_it():
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(_arrays(self.model.trainable_variables))

    model = _model(batch_norm=False)
    _fit(model, 2, [SwapEvaluationWeights(swap_on_epoch=True), Record()], validation=False)
    plain = _model(batch_norm=False)
    _fit(plain, 2, validation=False)
    _assert_equal_lists(_arrays(model.trainable_variables), _arrays(plain.trainable_variables))
    _assert_equal_lists(seen[-1], _arrays(plain.trainable_variables))  # x, as after fit


def test_needs_an_optimizer_with_evaluation_weights():
    model = _model(batch_norm=False)
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="Received: model.optimizer="):
        _fit(model, 1, [SwapEvaluationWeights()])


def test_xla_and_mixed_float16_with_loss_scaling():
    model = _model()
    _fit(model, 2, [SwapEvaluationWeights(bn_data=_data()[0])], jit_compile=True)
    assert model.optimizer.holds_evaluation_weights
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        net = _model()
        net.compile(keras.optimizers.LossScaleOptimizer(_schedule_free()), "mse")
        history = _fit(net, 2, [SwapEvaluationWeights(bn_data=_data()[0])])
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    assert np.all(np.isfinite(history.history["val_loss"]))
    assert net.optimizer.inner_optimizer.holds_evaluation_weights


def test_mirrored_strategy_matches_one_device():
    one = _model(batch_norm=False)
    _fit(one, 2, [SwapEvaluationWeights()])
    with mirrored_two_cpus().scope():
        two = _model(batch_norm=False)
        two.compile(_schedule_free(), "mse")
    history = _fit(two, 2, [SwapEvaluationWeights()])
    assert two.optimizer.holds_evaluation_weights
    for a, b in zip(_arrays(one.trainable_variables), _arrays(two.trainable_variables)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(history.history["val_loss"]))


def test_model_evaluate_and_predict_with_the_callback_run_at_x_and_put_y_back():
    model = _model(batch_norm=False)
    _fit(model, 2, [SwapEvaluationWeights()], validation=False)
    x_val, y_val = _data(32, seed=1)
    at_x = model.predict(x_val, verbose=0)
    loss_at_x = model.evaluate(x_val, y_val, verbose=0)
    assert model.optimizer.swap_to_training_weights()
    at_y = _arrays(model.trainable_variables)
    assert np.abs(model.predict(x_val, verbose=0) - at_x).max() > 1e-4  # y predicts differently
    np.testing.assert_array_equal(model.predict(x_val, verbose=0, callbacks=[SwapEvaluationWeights()]), at_x)
    assert model.evaluate(x_val, y_val, verbose=0, callbacks=[SwapEvaluationWeights()]) == loss_at_x
    _assert_equal_lists(_arrays(model.trainable_variables), at_y)
    assert not model.optimizer.holds_evaluation_weights


def test_fit_without_an_evaluation_swap_warns_once_and_with_one_does_not(caplog):
    x, y = _data()
    with caplog.at_level(logging.WARNING, logger="keras_trainkit.optimizers.schedule_free"):
        model = _model(batch_norm=False)
        _fit(model, 1, [SwapEvaluationWeights()])
        Trainer(_model(batch_norm=False), _schedule_free(), "mse", jit_compile=False).fit(
            x, y, batch_size=BATCH, epochs=1, verbose=0)
        assert "ScheduleFree: the model holds the average x now" not in caplog.text
        _fit(model, 1)
        _fit(model, 1)
    assert caplog.text.count("SwapEvaluationWeights(bn_data=x_train)") == 1
    assert caplog.text.count("ScheduleFree: the model holds the average x now") == 1
