"""EarlyStopping: Prechelt's criteria against hand-computed examples, Keras parity,
NaN handling, and a real overfitting run with a bitwise weight restore."""

import copy

import keras
import numpy as np
import pytest

import keras_trainkit as tk
from keras_trainkit.callbacks import EarlyStopping


def _tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _drive(callback, val, train=None, monitor="val_loss"):
    """Feed epoch logs to the callback; return the 0-based epoch it stopped at (or None)."""
    model = _tiny_model()
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate(val):
        logs = {monitor: value}
        if train is not None:
            logs["loss"] = train[epoch]
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            return epoch
    return None


def test_gl_matches_hand_computation():
    # E_opt = 0.8 after epoch 2; GL(3) = 100 * (0.85 / 0.8 - 1) = 6.25 <= 10,
    # GL(4) = 100 * (0.9 / 0.8 - 1) = 12.5 > 10 -> stop at the 4th epoch (index 3).
    cb = EarlyStopping(patience=100, GL_alpha=10.0)
    assert _drive(cb, [1.0, 0.8, 0.85, 0.9, 0.7]) == 3
    assert cb.stopped_reason == "GL"
    assert cb.history[-1][4] == pytest.approx(12.5)
    # GL_alpha = 13 is never exceeded by these values.
    assert _drive(EarlyStopping(patience=100, GL_alpha=13.0), [1.0, 0.8, 0.85, 0.9, 0.7]) is None


def test_pq_matches_hand_computation():
    # k = 2. Strip ends are checks 2 and 4 only.
    # t=2: GL = 0 -> PQ = 0.
    # t=3: GL = 100 * (0.95 / 0.9 - 1) = 5.56 but not a strip end.
    # t=4: GL = 100 * (0.97 / 0.9 - 1) = 7.7778,
    #      P_2 = 1000 * ((0.6 + 0.59) / (2 * 0.59) - 1) = 8.4746, PQ = 0.9178.
    val = [1.0, 0.9, 0.95, 0.97, 0.5, 0.5]
    train = [1.0, 0.8, 0.6, 0.59, 0.5, 0.5]
    gl = 100 * (0.97 / 0.9 - 1)
    progress = 1000 * ((0.6 + 0.59) / (2 * 0.59) - 1)
    assert gl / progress == pytest.approx(0.91776, abs=1e-4)
    cb = EarlyStopping(patience=100, PQ_alpha=0.5, strip_length=2)
    assert _drive(cb, val, train) == 3
    assert cb.stopped_reason == "PQ"
    assert _drive(EarlyStopping(patience=100, PQ_alpha=1.0, strip_length=2), val, train) is None


def test_up_matches_hand_computation():
    # k = 2: strip ends t = 2, 4, 6, 8 with E_va = 0.9, 0.95, 0.97, 1.1.
    # Rises at t = 4, 6, 8 -> UP_2 stops at t = 6 (index 5), UP_3 at t = 8 (index 7).
    val = [1.0, 0.9, 0.8, 0.95, 0.9, 0.97, 0.99, 1.1, 1.2]
    cb = EarlyStopping(patience=100, UP_s=2, strip_length=2)
    assert _drive(cb, val) == 5
    assert cb.stopped_reason == "UP"
    assert _drive(EarlyStopping(patience=100, UP_s=3, strip_length=2), val) == 7
    # A fall at a strip end resets the count: 0.9, 0.95(up), 0.92(down), 0.93(up), 0.94(up).
    val = [1, 0.9, 1, 0.95, 1, 0.92, 1, 0.93, 1, 0.94]
    assert _drive(EarlyStopping(patience=100, UP_s=2, strip_length=2), val) == 9


def test_target_divergence_and_relative_delta():
    cb = EarlyStopping(monitor="val_loss", patience=100, target=0.5)
    assert _drive(cb, [1.0, 0.7, 0.5, 0.4]) == 2 and cb.stopped_reason == "target"
    cb = EarlyStopping(patience=100, divergence_threshold=5.0)
    assert _drive(cb, [1.0, 2.0, 6.0, 0.1]) == 2 and cb.stopped_reason == "divergence"
    # Relative: 10 -> 9.5 is a 5% improvement (< 10%), so it counts as no improvement.
    cb = EarlyStopping(patience=1, min_delta=0.1, min_delta_mode="relative")
    assert _drive(cb, [10.0, 9.5, 9.4]) == 1 and cb.stopped_reason == "patience"
    cb = EarlyStopping(patience=1, min_delta=0.1, min_delta_mode="absolute")
    assert _drive(cb, [10.0, 9.5, 9.4]) == 2
    # Max mode with a target.
    cb = EarlyStopping(monitor="val_acc", mode="max", patience=100, target=0.9)
    assert _drive(cb, [0.5, 0.95], monitor="val_acc") == 1


@pytest.mark.parametrize("seed", range(12))
def test_matches_keras_with_keras_arguments(seed):
    rng = np.random.default_rng(seed)
    values = list(np.cumsum(rng.normal(0.0, 1.0, size=30)))
    kwargs = dict(patience=int(rng.integers(0, 4)), min_delta=float(rng.choice([0.0, 0.3])),
                  start_from_epoch=int(rng.integers(0, 3)),
                  baseline=None if seed % 3 else float(values[0] - 0.5))
    ours = EarlyStopping(mode="min", **kwargs)
    theirs = keras.callbacks.EarlyStopping(mode="min", **kwargs)
    stopped = _drive(ours, values)
    model = _tiny_model()
    theirs.set_model(model)
    theirs.on_train_begin()
    expected = None
    for epoch, value in enumerate(values):
        theirs.on_epoch_end(epoch, {"val_loss": value})
        if model.stop_training:
            expected = epoch
            break
    assert stopped == expected


def test_check_every_n_steps_reads_batch_logs():
    cb = EarlyStopping(monitor="loss", patience=0, check_every_n_steps=2)
    model = _tiny_model()
    cb.set_model(model)
    cb.on_train_begin()
    cb.on_epoch_begin(0)
    for step, loss in enumerate([1.0, 0.9, 0.95, 0.97, 0.99, 1.0]):
        cb.on_train_batch_end(step, {"loss": loss})
        if model.stop_training:
            break
    # checks at steps 2 (0.9) and 4 (0.97: no improvement, patience 0) -> stop at step 4
    assert cb.stopped_step == 4 and cb.stopped_reason == "patience"


def test_nan_loss_stops_at_once_and_restores_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    x2 = x.copy()
    x2[40] = np.nan  # the 6th batch of 8 (epoch 0) carries a NaN
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    start = model.get_weights()
    cb = EarlyStopping(monitor="loss", patience=5)  # check_finite is on by default
    history = model.fit(x2, y, batch_size=8, epochs=3, verbose=0, shuffle=False, callbacks=[cb])
    assert cb.stopped_reason == "non_finite"
    assert cb.stopped_step == 6  # the batch that produced the NaN, not the epoch end
    assert len(history.history["loss"]) == 1
    for a, b in zip(model.get_weights(), start):
        np.testing.assert_array_equal(a, b)


def test_overfitting_run_restores_best_epoch_bitwise():
    (x, y), (x_test, y_test) = tk.datasets.load_mnist1d()
    x, y = x[:150], y[:150]
    x_val, y_val = x_test[:400], y_test[:400]
    keras.utils.set_random_seed(1)
    model = tk.models.mlp((40,), 10, depth=2, width=256)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    snapshots = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    stop = EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True)
    history = model.fit(x, y, batch_size=50, epochs=60, verbose=0,
                        validation_data=(x_val, y_val), callbacks=[record, stop])
    val = history.history["val_loss"]
    assert stop.stopped_reason == "patience"
    assert len(val) < 60
    assert stop.best_epoch == int(np.argmin(val))
    assert stop.best_epoch < len(val) - 1
    for a, b in zip(model.get_weights(), snapshots[stop.best_epoch]):
        np.testing.assert_array_equal(a, b)
    # the training loss kept falling after the best validation epoch
    assert history.history["loss"][-1] < history.history["loss"][stop.best_epoch]


def test_reuse_and_deepcopy_reset_state():
    cb = EarlyStopping(monitor="loss", patience=0, GL_alpha=1.0)
    _drive(cb, [1.0, 2.0], monitor="loss")
    assert cb.stopped_reason is not None
    clone = copy.deepcopy(cb)
    assert clone.get_config() == cb.get_config() and clone.stopped_reason is None
    model = _tiny_model()
    model.fit(np.ones((4, 2)), np.ones(4), epochs=1, verbose=0, callbacks=[cb])
    assert cb.stopped_reason is None


@pytest.mark.parametrize("kwargs,name", [
    ({"patience": -1}, "patience"),
    ({"mode": "up"}, "mode"),
    ({"GL_alpha": 0.0}, "GL_alpha"),
    ({"strip_length": 0}, "strip_length"),
    ({"GL_alpha": 1.0, "mode": "max"}, "mode"),
    ({"min_delta_mode": "percent"}, "min_delta_mode"),
    ({"target": 1.0, "divergence_threshold": 0.5, "mode": "min"}, "divergence_threshold"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"{name}=.*|Received: {name}="):
        EarlyStopping(**kwargs)


def test_all_callbacks_in_the_trainer_and_a_keras_tuner_search(tmp_path):
    import keras_tuner as kt

    from keras_trainkit.callbacks import (
        SWA,
        GradientClipping,
        LearningCurveDiagnosis,
        TimeBudget,
        TrainingMonitor,
    )
    from keras_trainkit.training import Trainer

    rng = np.random.default_rng(0)
    x = (3 * rng.normal(size=(32, 4))).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")

    def callbacks():
        return [GradientClipping(max_norm=1.0), EarlyStopping(patience=5, GL_alpha=50.0), TimeBudget(600),
                SWA(start_epoch=1), TrainingMonitor(log_dir=str(tmp_path / "tb"), log_every_n_steps=2),
                LearningCurveDiagnosis()]

    # Trainer: one full-batch step of clipped SGD on a linear model, checked in numpy.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    clip = GradientClipping(max_norm=1.0)
    Trainer(model, keras.optimizers.SGD(0.1), "mse", jit_compile=False).fit(
        x, y, batch_size=32, epochs=1, callbacks=[clip], verbose=0)
    gw, gb = 2 * x.T @ (-y) / 32, 2 * (-y).mean(axis=0)
    norm = np.sqrt((gw ** 2).sum() + (gb ** 2).sum())
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), -0.1 * gw / norm, rtol=1e-4, atol=1e-6)
    assert clip.transform.get_statistics()["grad_norm"] == pytest.approx(norm, rel=1e-4)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
    history = Trainer(model, keras.optimizers.SGD(0.05), "mse", jit_compile=False).fit(
        x, y, batch_size=16, epochs=3, validation_data=(x, y), callbacks=callbacks(), verbose=0)
    assert {"grad_norm", "clip_fraction", "val_loss"} <= set(history.history)
    assert isinstance(model.optimizer, keras.optimizers.SGD)

    def build(hp):
        net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Int("units", 4, 8, step=4),
                                                                       activation="tanh"), keras.layers.Dense(1)])
        net.compile(keras.optimizers.Adam(1e-2), "mse")
        return net

    tuner = kt.RandomSearch(build, objective="val_loss", max_trials=2, directory=str(tmp_path),
                            project_name="search", overwrite=True, seed=0)
    tuner.search(x, y, epochs=2, batch_size=32, validation_data=(x, y), callbacks=callbacks(), verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 2 and all(t.status == "COMPLETED" and np.isfinite(t.score) for t in trials)


def test_restore_optimizer_state_with_the_best_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0]])).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    slots, weights = [], []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: (
        slots.append([keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]), weights.append(model.get_weights())))
    # Validating against -y: the better the fit, the worse val_loss, so epoch 0 is the best.
    stop = EarlyStopping(patience=2, restore_best_weights=True, restore_optimizer_state=True)
    model.fit(x, y, batch_size=8, epochs=10, verbose=0, validation_data=(x, -y), callbacks=[record, stop])
    assert stop.best_epoch == 0 and stop.stopped_epoch == 2
    for a, b in zip(model.get_weights(), weights[0]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.optimizer.variables, slots[0]):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), b)
    assert int(model.optimizer.iterations.numpy()) == 4  # the step count of epoch 0
