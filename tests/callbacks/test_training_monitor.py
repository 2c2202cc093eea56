"""TrainingMonitor: TensorBoard event files read back with tensorboard's reader,
gradient norms against a separate tape, update ratios, hyperparameters, loss spikes."""

import copy

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from keras_trainkit.callbacks import TrainingMonitor


def _model(jit_compile=False):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="tanh", name="hidden")(inputs)
    outputs = keras.layers.Dense(1, name="out")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse", jit_compile=jit_compile)
    return model


def _data(n=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x @ rng.normal(size=(4, 1))).astype("float32")


@pytest.mark.parametrize("jit_compile", [False, True])
def test_event_files_hold_the_expected_tags(tmp_path, jit_compile):
    x, y = _data()
    model = _model(jit_compile)
    monitor = TrainingMonitor(log_dir=str(tmp_path), log_every_n_steps=2)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[monitor])  # 8 steps
    accumulator = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = set(accumulator.Tags()["tensors"])
    expected = {"gradient_norm/hidden", "gradient_norm/out", "gradient_norm/global",
                "update_ratio/hidden", "update_ratio/out", "update_ratio/global",
                "optimizer/learning_rate", "optimizer/momentum", "loss/batch"}
    assert expected <= tags, tags
    events = accumulator.Tensors("optimizer/learning_rate")
    assert [e.step for e in events] == [2, 4, 6, 8]
    assert float(tf.make_ndarray(events[0].tensor_proto)) == pytest.approx(0.05)
    norms = [float(tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors("gradient_norm/out")]
    assert norms == pytest.approx([r["gradient_norm/out"] for r in monitor.records], rel=1e-6)
    assert isinstance(model.optimizer, keras.optimizers.SGD)


def test_gradient_norms_and_update_ratios_match_a_separate_computation():
    x, y = _data()
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")  # plain SGD: update = lr * g

    class Tape(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.norms, self.weight_norms = [], []

        def on_train_batch_begin(self, batch, logs=None):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self.model(x) - y))
            grads = tape.gradient(loss, self.model.trainable_variables)
            by_layer = {}
            for v, g in zip(self.model.trainable_variables, grads):
                layer = v.path.split("/")[0]
                by_layer[layer] = by_layer.get(layer, 0.0) + float(tf.reduce_sum(g * g))
            self.norms.append({k: np.sqrt(s) for k, s in by_layer.items()})
            self.weight_norms.append(np.sqrt(sum(float(np.sum(v.numpy() ** 2))
                                                 for v in self.model.get_layer("out").trainable_variables)))

    tape = Tape()
    monitor = TrainingMonitor(log_every_n_steps=1)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[tape, monitor])
    assert len(monitor.records) == 3
    for record, norms, w_norm in zip(monitor.records, tape.norms, tape.weight_norms):
        assert record["gradient_norm/hidden"] == pytest.approx(norms["hidden"], rel=1e-5)
        assert record["gradient_norm/out"] == pytest.approx(norms["out"], rel=1e-5)
        # SGD: ||delta w|| = lr * ||g||
        assert record["update_ratio/out"] == pytest.approx(0.05 * norms["out"] / w_norm, rel=1e-4)


def _drive(monitor, batch_losses, batches_per_epoch=100):
    """Feed running-mean logs, as model.fit gives them, for the given batch losses."""
    model = _model()
    monitor.set_model(model)
    monitor.on_train_begin()
    total = 0.0
    for i, loss in enumerate(batch_losses):
        k = i % batches_per_epoch
        if k == 0:
            monitor.on_epoch_begin(i // batches_per_epoch)
            total = 0.0
        total += loss
        monitor.on_train_batch_end(k, {"loss": total / (k + 1)})
        if model.stop_training:
            break
    monitor.on_train_end()
    return model


def test_spike_detection_recovers_batch_losses_from_running_means():
    losses = [1.0 - 0.01 * i for i in range(30)]
    losses[25] = 5.0  # the spike: far above 3 x median
    monitor = TrainingMonitor(gradient_norms=False, update_ratios=False, spike_window=10, on_spike="ignore")
    _drive(monitor, losses, batches_per_epoch=12)
    assert [s["step"] for s in monitor.spikes] == [26]
    assert monitor.spikes[0]["loss"] == pytest.approx(5.0)
    stopper = TrainingMonitor(gradient_norms=False, update_ratios=False, spike_window=10, on_spike="stop")
    model = _drive(stopper, losses, batches_per_epoch=12)
    assert model.stop_training and stopper.stopped_reason == "loss_spike"
    nan = TrainingMonitor(gradient_norms=False, update_ratios=False, on_spike="ignore")
    _drive(nan, [1.0, float("nan"), 1.0])
    assert [s["step"] for s in nan.spikes] == [2]


def test_spike_in_a_real_fit_warns(caplog):
    x, y = _data(n=64)
    y = y.copy()
    y[48:52] *= 40.0  # batch 12 of 16 has huge targets
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    monitor = TrainingMonitor(log_every_n_steps=100, spike_window=8)
    with caplog.at_level("WARNING", logger="keras_trainkit.callbacks.training_monitor"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[monitor])
    assert [s["step"] for s in monitor.spikes][:1] == [13]
    assert "loss spike at step 13" in caplog.text


def test_reuse_deepcopy_and_bad_arguments(tmp_path):
    monitor = TrainingMonitor(log_dir=str(tmp_path), log_every_n_steps=1)
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    assert len(monitor.records) == 2 and monitor.records[0]["step"] == 1
    assert copy.deepcopy(monitor).get_config() == monitor.get_config()
    for kwargs, name in [({"spike_factor": 1.0}, "spike_factor"), ({"on_spike": "raise"}, "on_spike"),
                         ({"log_every_n_steps": 0}, "log_every_n_steps")]:
        with pytest.raises(ValueError, match=f"Received: {name}="):
            TrainingMonitor(**kwargs)


def test_sees_gradients_before_gradient_clipping():
    from keras_trainkit.callbacks import GradientClipping

    x, y = _data()
    x = 10 * x
    model = _model()
    clip = GradientClipping("global_norm", max_norm=0.1)
    monitor = TrainingMonitor(log_every_n_steps=1, update_ratios=False)

    class Logged(keras.callbacks.Callback):
        norms = []

        def on_train_batch_end(self, batch, logs=None):
            self.norms.append(logs["grad_norm"])

    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[clip, monitor, Logged()])
    recorded = [r["gradient_norm/global"] for r in monitor.records]
    assert recorded == pytest.approx(Logged.norms, rel=1e-5)
    assert min(recorded) > 0.1  # unclipped norms
