"""Corners of SpikeDetection, SWA and SwapEvaluationWeights that the other tests leave open.

* A resumed ``SpikeDetection`` run undoes a recorded call under ``steps_per_execution > 1``
  (Keras passes the call's first step to ``on_train_batch_begin`` and its last to
  ``on_train_batch_end``; the record holds the last), in ``model.fit`` and the ``Trainer``.
* An undone *last* batch of an epoch is taken out of the epoch's ``loss`` on both paths
  (reference: the epoch without that batch and without the callback). The ``Trainer``
  logged the last call's loss, read before ``on_train_batch_end`` undid it.
* Recomputing BatchNorm statistics draws no random numbers: training with
  ``SwapEvaluationWeights(bn_data=...)`` equals training without the callback even with
  ``Dropout`` (reference: the run without the callback).
* ``SWA`` refuses an optimizer whose end of ``fit`` writes other weights over its average
  (``use_ema=True``: the EMA; ``ScheduleFree``: its own ``x``), before any step.
"""

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import SWA, SpikeDetection, SwapEvaluationWeights
from keras_trainkit.callbacks.swa import recompute_batch_norm_statistics
from keras_trainkit.optimizers import ScheduleFree
from keras_trainkit.training import Trainer
from tests.callbacks.test_spike_detection import BATCH, SPIKE_BATCH
from tests.callbacks.test_spike_detection import _data as _spike_data
from tests.callbacks.test_spike_detection import _model as _one_step_spike_model


def _spike_model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse", steps_per_execution=2)
    return model


class _Weights(keras.callbacks.Callback):
    """The model's weights before and after every call of the train function."""

    def __init__(self):
        super().__init__()
        self.before, self.after = [], []

    def _weights(self):
        return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in self.model.trainable_variables]

    def on_train_batch_begin(self, batch, logs=None):
        self.before.append(self._weights())

    def on_train_batch_end(self, batch, logs=None):
        self.after.append(self._weights())


def _fit_spikes(callback, fit_with):
    x, y = _spike_data()
    model = _spike_model()
    recorder = _Weights()
    if fit_with == "trainer":
        Trainer.from_compiled(model, shuffle=False, steps_per_execution=2).fit(
            x, y, batch_size=BATCH, verbose=0, callbacks=[callback, recorder])
    else:
        model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[callback, recorder])
    return recorder


@pytest.mark.parametrize("fit_with", ["model", "trainer"])
def test_an_undone_last_batch_is_taken_out_of_the_epoch_loss(fit_with):
    x, y = _spike_data()
    kept = SPIKE_BATCH * BATCH
    x, y = x[:kept + BATCH], y[:kept + BATCH]  # the spiking batch is the epoch's last
    reference = _one_step_spike_model().fit(x[:kept], y[:kept], batch_size=BATCH, shuffle=False, verbose=0)
    model, callback = _one_step_spike_model(), SpikeDetection(policy="skip", warmup=2)
    if fit_with == "trainer":
        history = Trainer.from_compiled(model, shuffle=False).fit(x, y, batch_size=BATCH, verbose=0,
                                                                  callbacks=[callback])
    else:
        history = model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[callback])
    assert [s["step"] for s in callback.spikes] == [SPIKE_BATCH]
    assert history.history["loss"] == pytest.approx(reference.history["loss"], rel=1e-6)


@pytest.mark.parametrize("fit_with", ["model", "trainer"])
def test_a_resumed_run_undoes_a_recorded_call_under_steps_per_execution(tmp_path, fit_with):
    path = str(tmp_path / "spikes.npz")
    first = SpikeDetection(policy="stop", warmup=2, state_path=path)
    _fit_spikes(first, fit_with)
    call = SPIKE_BATCH // 2  # calls of 2 steps: the spike is in the call of steps 6 and 7
    assert [(s["epoch"], s["step"]) for s in first.spikes] == [(0, 2 * call + 1)]

    resumed = SpikeDetection(policy="stop", warmup=2, rtol=1e9, state_path=path)
    recorder = _fit_spikes(resumed, fit_with)
    assert len(recorder.after) == 6, "the resumed run trains on"
    for before, after in zip(recorder.before[call], recorder.after[call]):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(recorder.before[call - 1], recorder.after[call - 1]):
        assert not np.array_equal(before, after)


def _dropout_model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
                              keras.layers.Dropout(0.5, seed=7), keras.layers.Dense(1)])
    model.compile(ScheduleFree(keras.optimizers.SGD(0.05)), "mse")
    return model


def test_batch_norm_recomputation_at_x_leaves_dropout_training_unchanged():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    trained = []
    for callbacks in ([SwapEvaluationWeights(bn_data=x)], []):
        model = _dropout_model()
        model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, validation_data=(x, y),
                  callbacks=callbacks)
        trained.append([keras.ops.convert_to_numpy(w) for w in model.optimizer.training_weights()])
    for with_callback, without in zip(*trained):
        np.testing.assert_array_equal(with_callback, without)


def test_recompute_batch_norm_statistics_changes_only_the_statistics():
    model = _dropout_model()
    x = np.random.default_rng(1).normal(size=(32, 4)).astype("float32")
    bn = model.layers[1]
    seeds = [v for v in model.non_trainable_variables if "seed" in v.path]
    assert seeds, "the Dropout layer keeps a seed-generator state"
    seeds_before = [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in seeds]
    assert recompute_batch_norm_statistics(model, x, batch_size=8) == 4
    for before, v in zip(seeds_before, seeds):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(v))
    # Independent: the mean over batches of each batch's mean at the BN input.
    features = x @ keras.ops.convert_to_numpy(model.layers[0].kernel) + keras.ops.convert_to_numpy(
        model.layers[0].bias)
    expected = np.mean([features[i:i + 8].mean(axis=0) for i in range(0, 32, 8)], axis=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fit_with", ["model", "trainer"])
@pytest.mark.parametrize("optimizer,match", [
    (lambda: keras.optimizers.SGD(0.05, use_ema=True), r"use_ema=True.*Received: optimizer.use_ema=True"),
    (lambda: ScheduleFree(keras.optimizers.SGD(0.05)), r"puts its average.*Received: optimizer=ScheduleFree"),
    (lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(use_ema=True)),
     r"Received: optimizer.use_ema=True"),
])
def test_swa_refuses_an_optimizer_that_replaces_its_average_at_the_end_of_fit(fit_with, optimizer, match):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer(), "mse")
    x, y = np.ones((16, 4), "float32"), np.ones((16, 1), "float32")
    with pytest.raises(ValueError, match=match):
        if fit_with == "trainer":
            Trainer.from_compiled(model, shuffle=False).fit(x, y, batch_size=8, epochs=3, verbose=0,
                                                            callbacks=[SWA(start_epoch=1)])
        else:
            model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[SWA(start_epoch=1)])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0, "refused before any step"


def test_a_skipped_batch_leaves_nothing_in_the_trainers_accumulated_gradient():
    # Reference: model.fit with Keras's optimizer-side accumulation, whose partial sum is an
    # optimizer variable (so in the copy). Before, the Trainer's own partial sum kept the
    # spiking gradient and applied it with the next batch (a 7.88 update, three more spikes).
    x, y = _spike_data()
    runs = {}
    for runner in ("fit", "trainer"):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh"),
                                  keras.layers.Dense(1)])
        accumulate = {"gradient_accumulation_steps": 2} if runner == "fit" else {}
        model.compile(keras.optimizers.SGD(0.01, **accumulate), "mse")
        detector = SpikeDetection(policy="skip", warmup=2)
        if runner == "fit":
            model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[detector])
        else:
            Trainer.from_compiled(model, shuffle=False, gradient_accumulation_steps=2).fit(
                x, y, batch_size=BATCH, verbose=0, callbacks=[detector])
        runs[runner] = ([s["step"] for s in detector.spikes], [w.numpy() for w in model.trainable_variables])
    assert runs["fit"][0] == runs["trainer"][0] == [SPIKE_BATCH]
    for trainer_weight, fit_weight in zip(runs["trainer"][1], runs["fit"][1]):
        np.testing.assert_allclose(trainer_weight, fit_weight, rtol=1e-5, atol=1e-6)


def test_a_model_saved_during_swa_annealing_over_a_schedule_loads_its_optimizer_state(tmp_path):
    # SWA holds the learning rate in place of the schedule from start_epoch; a ModelCheckpoint
    # then must still save the schedule. Before, the held variable was saved as a float
    # learning rate: the loaded Adam had one variable more, Keras skipped loading its state
    # (iterations 8 -> 0, moments dropped) and the schedule was lost.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)
    model.compile(keras.optimizers.Adam(schedule), "mse")
    path = str(tmp_path / "model.keras")

    class SaveWhileHeld(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.state = [np.array(keras.ops.convert_to_numpy(v)) for v in self.model.optimizer.variables]
            self.model.save(path)  # during SWA's epoch 1, with the rate held at 0.01

    saver = SaveWhileHeld()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[SWA(start_epoch=1, swa_learning_rate=0.01), saver])
    loaded = keras.models.load_model(path)
    learning_rate = loaded.optimizer.get_config()["learning_rate"]
    assert learning_rate == keras.optimizers.schedules.serialize(schedule)
    loaded_state = [keras.ops.convert_to_numpy(v) for v in loaded.optimizer.variables]
    assert len(loaded_state) == len(saver.state)
    for saved, restored in zip(saver.state, loaded_state):
        np.testing.assert_array_equal(restored, saved)
    assert int(loaded_state[0]) == 8  # iterations


def test_training_monitor_reads_each_batch_loss_exactly_for_unequal_batch_sizes():
    # Batches of 4, 4 and 2 at learning rate 0: each batch's loss is numpy's MSE of the model's
    # predictions on it. Before, the last batch's came from running means (exact for equal
    # sizes only): a blend of its loss and the epoch's mean.
    from keras_trainkit.callbacks import TrainingMonitor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype("float32")
    y = np.concatenate([np.zeros((8, 1)), 10 * np.ones((2, 1))]).astype("float32")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    monitor = TrainingMonitor(log_every_n_steps=1, gradient_norms=False, update_ratios=False,
                              hyperparameters=False, on_spike="ignore")
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    predictions = model.predict(x, verbose=0)
    expected = [float(np.mean((predictions[i:i + 4] - y[i:i + 4]) ** 2)) for i in (0, 4, 8)]
    np.testing.assert_allclose([r["loss/batch"] for r in monitor.records], expected, rtol=1e-5)


def test_spike_detection_refuses_a_train_step_that_leaves_the_loss_tracker_alone():
    # Before, its batch loss was NaN at every step, no batch counted as good, and detection
    # never started: a silent no-op.
    import tensorflow as tf

    class OwnLoss(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)
            self.own_loss = keras.metrics.Mean(name="own_loss")

        def call(self, inputs):
            return self.dense(inputs)

        def train_step(self, data):
            inputs, targets = data
            with tf.GradientTape() as tape:
                loss = keras.ops.mean((self(inputs) - targets) ** 2)
            self.optimizer.apply(tape.gradient(loss, self.trainable_variables), self.trainable_variables)
            self.own_loss.update_state(loss)
            return {"loss": self.own_loss.result()}

    model = OwnLoss()
    model.compile("sgd")
    x, y = np.ones((16, 4), "float32"), np.ones((16, 1), "float32")
    with pytest.raises(ValueError, match="did not update.*Received: model="):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[SpikeDetection()])
