"""ReduceLROnPlateau: Keras/torch-equivalent decisions, schedules keep their shape.

References: ``keras.callbacks.ReduceLROnPlateau`` (float learning rate, absolute
threshold) and ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (relative
threshold; torch reduces when ``bad_epochs > patience``, Keras and we when
``wait >= patience``, so torch gets ``patience - 1``). The in-``fit`` tests use
a linear "loss" ``mean(y_pred)`` with inputs of ones, so each SGD update moves
the single weight by exactly ``-lr(t)``: the weight's total change is the sum
of the learning rates really used by the compiled step.
"""

import copy
import json

import keras
import numpy as np
import pytest
import torch

import keras_trainkit
from keras_trainkit.callbacks import ReduceLROnPlateau
from keras_trainkit.schedules import CosineAnnealing, ScaledSchedule

STEPS_PER_EPOCH, EPOCHS = 4, 6
TOTAL = STEPS_PER_EPOCH * EPOCHS


@keras.saving.register_keras_serializable(package="test_reduce_lr_on_plateau")
def mean_output(y_true, y_pred):
    """A loss whose gradient with respect to each output is 1 / batch size."""
    return keras.ops.mean(y_pred)


def _linear_model(optimizer):
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")]
    )
    model.compile(optimizer=optimizer, loss=mean_output)
    return model


class Plateau(keras.callbacks.Callback):
    """Logs a constant ``plateau`` value, so every epoch after the first is "no improvement"."""

    def on_epoch_end(self, epoch, logs=None):
        logs["plateau"] = 1.0


def _fit(model, callback):
    x = np.ones((STEPS_PER_EPOCH * 4, 1), "float32")
    history = model.fit(x, x, batch_size=4, epochs=EPOCHS, shuffle=False, verbose=0,
                        callbacks=[Plateau(), callback])
    return 1.0 - float(model.get_weights()[0][0, 0]), history  # = sum of the lrs used


def _cosine(t, peak=0.1, alpha=0.1, steps=TOTAL):
    """The course formula: eta_t = peak * (alpha + (1 - alpha)(1 + cos(pi t / T)) / 2)."""
    t = np.minimum(t, steps)
    return peak * (alpha + (1 - alpha) * 0.5 * (1 + np.cos(np.pi * t / steps)))


# patience=2, cooldown=0, constant monitor: reductions at the ends of epochs 2 and 4.
_SCALE_PER_EPOCH = np.array([1, 1, 1, 0.5, 0.5, 0.25])


def test_cosine_annealing_is_scaled_in_fit_and_keeps_its_shape():
    schedule = CosineAnnealing(0.1, decay_steps=TOTAL, alpha=0.1)
    model = _linear_model(keras.optimizers.SGD(schedule))
    callback = ReduceLROnPlateau(monitor="plateau", mode="min", factor=0.5, patience=2, min_delta=0.0)
    used, history = _fit(model, callback)
    t = np.arange(TOTAL)
    scale = np.repeat(_SCALE_PER_EPOCH, STEPS_PER_EPOCH)
    np.testing.assert_allclose(used, np.sum(scale * _cosine(t)), rtol=1e-5)
    wrapped = model.optimizer._learning_rate
    assert isinstance(wrapped, ScaledSchedule) and wrapped.schedule is schedule
    assert wrapped.scale == pytest.approx(0.25)
    # The shape is kept: the whole curve is the cosine times the final scale.
    steps = np.arange(0, 3 * TOTAL, 7)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(wrapped(steps)), 0.25 * _cosine(steps),
                               rtol=1e-5)
    logged = history.history["learning_rate"]
    np.testing.assert_allclose(logged, _SCALE_PER_EPOCH * _cosine(t[3::4] + 1), rtol=1e-5)


def test_float_learning_rate_in_fit_matches_keras_rule():
    model = _linear_model(keras.optimizers.SGD(0.1))
    used, _ = _fit(model, ReduceLROnPlateau(monitor="plateau", mode="min", factor=0.5, patience=2,
                                            min_delta=0.0))
    np.testing.assert_allclose(used, 0.1 * STEPS_PER_EPOCH * _SCALE_PER_EPOCH.sum(), rtol=1e-5)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.025)


def _wrappers():
    makers = [("LossScaleOptimizer", lambda opt: keras.optimizers.LossScaleOptimizer(opt))]
    wrapper = getattr(keras_trainkit.optimizers, "OptimizerWrapper", None)
    if wrapper is not None:
        makers.append(("OptimizerWrapper", wrapper))
    return makers


@pytest.mark.parametrize("name,wrap", _wrappers(), ids=[n for n, _ in _wrappers()])
def test_inner_optimizer_of_a_wrapper(name, wrap):
    schedule = CosineAnnealing(0.1, decay_steps=TOTAL, alpha=0.1)
    model = _linear_model(wrap(keras.optimizers.SGD(schedule)))
    used, _ = _fit(model, ReduceLROnPlateau(monitor="plateau", mode="min", factor=0.5, patience=2,
                                            min_delta=0.0))
    scale = np.repeat(_SCALE_PER_EPOCH, STEPS_PER_EPOCH)
    np.testing.assert_allclose(used, np.sum(scale * _cosine(np.arange(TOTAL))), rtol=1e-5)


def _drive(callback, model, values, key="val_loss"):
    callback.set_model(model)
    callback.on_train_begin()
    lrs = []
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {key: value})
        lrs.append(float(model.optimizer.learning_rate))
    return lrs


def _compiled(lr=1.0):
    model = _linear_model(keras.optimizers.SGD(lr))
    model.optimizer.build(model.trainable_variables)
    return model


_SEQUENCE = [1.0, 0.9, 0.9, 0.95, 0.9, 0.8999, 0.7, 0.7, 0.71, 0.72, 0.69, 0.69, 0.69, 0.69, 0.5,
             0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]


@pytest.mark.parametrize("patience,cooldown,min_delta,min_lr",
                         [(1, 0, 0.0, 0.0), (2, 1, 1e-3, 0.0), (3, 2, 0.0, 0.05), (0, 0, 0.01, 0.1)])
def test_float_decisions_match_keras(patience, cooldown, min_delta, min_lr):
    kwargs = dict(monitor="val_loss", factor=0.5, patience=patience, cooldown=cooldown,
                  min_delta=min_delta, min_lr=min_lr)
    ours = _drive(ReduceLROnPlateau(**kwargs), _compiled(), _SEQUENCE)
    reference = _drive(keras.callbacks.ReduceLROnPlateau(**kwargs), _compiled(), _SEQUENCE)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
    assert min(ours) < 1.0  # the sequence triggers reductions


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("patience,threshold,min_lr", [(1, 1e-2, 0.0), (3, 5e-2, 0.2)])
def test_relative_threshold_matches_torch(mode, patience, threshold, min_lr):
    sequence = _SEQUENCE if mode == "min" else [-v for v in _SEQUENCE]
    sequence = [v + 2.0 for v in sequence]  # keep |best| = best > 0, where torch's rule is ours
    ours = _drive(ReduceLROnPlateau(monitor="val_loss", mode=mode, factor=0.5, patience=patience,
                                    min_delta=threshold, threshold_mode="rel", min_lr=min_lr),
                  _compiled(), sequence)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=0.5, patience=patience - 1, threshold=threshold,
        threshold_mode="rel", cooldown=0, min_lr=min_lr)
    reference = []
    for value in sequence:
        scheduler.step(value)
        reference.append(optimizer.param_groups[0]["lr"])
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
    assert min(ours) < 1.0


def test_min_lr_bounds_the_effective_rate_of_a_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5)
    model = _linear_model(keras.optimizers.SGD(schedule))
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(10)  # schedule(10) = 0.5
    lrs = _drive(ReduceLROnPlateau(factor=0.1, patience=1, min_lr=0.2), model, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(lrs, [0.5, 0.2, 0.2], rtol=1e-6)
    assert model.optimizer._learning_rate.scale == pytest.approx(0.4)


def test_state_survives_save_load_and_resume(tmp_path):
    schedule = CosineAnnealing(0.1, decay_steps=TOTAL, alpha=0.1)
    model = _linear_model(keras.optimizers.SGD(schedule))
    callback = ReduceLROnPlateau(monitor="plateau", mode="min", factor=0.5, patience=2, min_delta=0.0)
    _fit(model, callback)
    state = json.loads(json.dumps(callback.get_state()))
    assert state == {"wait": 1, "best": 1.0, "cooldown_counter": 0}
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.optimizer._learning_rate
    assert isinstance(restored, ScaledSchedule) and restored.scale == pytest.approx(0.25)
    # A new callback with the saved state reuses the scale and the counters.
    resumed = ReduceLROnPlateau(monitor="plateau", mode="min", factor=0.5, patience=2, min_delta=0.0)
    resumed.set_state(state)
    resumed.set_model(loaded)
    resumed.on_train_begin()
    assert resumed.get_state() == state
    assert loaded.optimizer._learning_rate is restored
    resumed.on_epoch_end(0, {"plateau": 1.0})  # wait 1 -> 2: reduce
    assert restored.scale == pytest.approx(0.125)
    resumed.on_train_begin()  # a later fit starts from scratch
    assert resumed.get_state() == {"wait": 0, "best": None, "cooldown_counter": 0}


def test_deepcopy_and_config_round_trip():
    callback = ReduceLROnPlateau(monitor="loss", factor=0.2, patience=3, threshold_mode="rel")
    clone = copy.deepcopy(callback)
    assert clone.get_config() == callback.get_config()
    assert ReduceLROnPlateau.from_config(callback.get_config()).get_config() == callback.get_config()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"factor": 1.0}, "Received: factor=1.0"),
        ({"factor": 0.0}, "Received: factor=0.0"),
        ({"patience": -1}, "Received: patience=-1"),
        ({"cooldown": -2}, "Received: cooldown=-2"),
        ({"min_lr": -1e-3}, "Received: min_lr=-0.001"),
        ({"min_delta": -1.0}, "Received: min_delta=-1.0"),
        ({"threshold_mode": "relative"}, "Received: threshold_mode='relative'"),
        ({"mode": "up"}, "Received: mode='up'"),
    ],
)
def test_bad_arguments_name_argument_and_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReduceLROnPlateau(**kwargs)


@pytest.mark.skipif(not hasattr(keras.optimizers, "MultiOptimizer"),
                    reason="keras.optimizers.MultiOptimizer exists from Keras 3.15 on")
def test_per_layer_set_of_learning_rates():
    """A MultiOptimizer: a float rate on one layer, a schedule on the other; both reduced."""
    first = keras.optimizers.SGD(0.1, name="first")
    second = keras.optimizers.SGD(CosineAnnealing(0.1, decay_steps=TOTAL, alpha=0.1), name="second")
    optimizer = keras.optimizers.MultiOptimizer(
        lambda variable: first if "dense_first" in variable.path else second)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2, name="dense_first"),
                              keras.layers.Dense(1, name="dense_second")])
    model.compile(optimizer=optimizer, loss=mean_output)
    x = np.ones((16, 1), "float32")
    history = model.fit(x, x, batch_size=4, epochs=EPOCHS, verbose=0, callbacks=[
        Plateau(), ReduceLROnPlateau(monitor="plateau", mode="min", factor=0.5, patience=2,
                                     min_delta=0.0)])
    assert float(first.learning_rate) == pytest.approx(0.1 * 0.25)
    assert second._learning_rate.scale == pytest.approx(0.25)
    assert {"learning_rate_first", "learning_rate_second"} <= set(history.history)
