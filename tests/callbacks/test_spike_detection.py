"""``SpikeDetection``: the rule against a transcription of Lightning's, and each policy's effect on the state.

The rule is checked end to end in ``model.fit`` with a model whose batch loss is known
in advance (zero kernel, learning rate 0: the loss of batch ``i`` is ``y_i**2``), so the
callback's batch-loss reading is checked too. The policies are checked on a Dense model
trained with SGD + momentum where one batch has targets 1e3 times too large: with
``"skip"`` the weights and optimizer variables after that batch equal those before it,
with ``"restore"`` those of the last snapshot, with ``"stop"`` training ends there; a
resumed run with the saved record undoes the recorded batch without looking at its loss.
"""

import math

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import SpikeDetection
from keras_trainkit.callbacks.spike_detection import is_spike
from keras_trainkit.optimizers import control
from keras_trainkit.training import Trainer
from keras_trainkit.utils.checkpoints import load_checkpoint

BATCH = 4
SPIKE_BATCH = 6


def _lightning_spikes(losses, window, warmup, atol, rtol):
    """Lightning 2.6's ``SpikeDetection`` (mode "min", finite_only=True), transcribed without raising."""
    running, last_val, spikes = [], 0.0, []
    for batch_idx, loss in enumerate(losses):
        spike = False
        if batch_idx >= warmup:
            running_val = np.mean(running[-window:])
            if not math.isfinite(loss):
                spike = True
            elif not loss - last_val <= 0.0:
                spike = (atol is None or abs(loss - running_val) >= abs(atol)) and (
                    rtol is None or abs(loss - running_val) >= abs(rtol * running_val))
        if spike:
            spikes.append(batch_idx)
        else:
            running.append(loss)
            last_val = loss
    return spikes


def _loss_sequence(seed):
    rng = np.random.default_rng(seed)
    losses = 2.0 * np.exp(-np.arange(150) / 60.0) * rng.uniform(0.8, 1.25, size=150)
    for step, factor in ((20, 8.0), (21, 9.0), (57, 4.0), (90, 30.0), (91, 2.5), (130, 6.0)):
        losses[step] *= factor
    return losses


def _fit_losses(losses, callback):
    """``model.fit`` with batch size 1 where batch ``i`` has loss ``losses[i]`` (NaN as a NaN target)."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    y = np.sqrt(np.asarray(losses, "float64")).astype("float32")
    model.fit(np.ones((len(y), 1), "float32"), y, batch_size=1, shuffle=False, verbose=0, callbacks=[callback])


@pytest.mark.parametrize(
    "window,warmup,atol,rtol",
    [(10, 1, None, 2.0), (5, 8, None, 1.0), (20, 3, 0.5, 1.5), (3, 2, 0.2, 0.3)],
)
def test_the_rule_matches_lightning_in_model_fit(window, warmup, atol, rtol):
    losses = _loss_sequence(window)
    losses[100] = np.nan
    callback = SpikeDetection(policy="skip", window=window, warmup=warmup, atol=atol, rtol=rtol,
                              max_consecutive=None)
    _fit_losses(losses, callback)
    expected = _lightning_spikes(list(losses.astype("float32").astype("float64")), window, warmup, atol, rtol)
    assert [s["step"] for s in callback.spikes] == expected
    assert 3 <= len(expected) < 20
    for spike in callback.spikes:
        loss = float(np.float32(losses[spike["step"]]))
        assert (math.isnan(spike["loss"]) and math.isnan(loss)) or spike["loss"] == pytest.approx(loss, rel=1e-5)


def test_a_loss_far_below_the_mean_is_not_a_spike_unlike_lightning():
    """Lightning compares ``|loss - mean|``; here only a rise counts (pinned difference)."""
    losses = [10.0, 10.0, 10.0, 1.0, 2.0]
    assert _lightning_spikes(losses, window=10, warmup=1, atol=1.0, rtol=None) == [4]
    assert not is_spike(2.0, last_good=1.0, recent=[10.0, 10.0, 10.0, 1.0], atol=1.0, rtol=None)


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12 * BATCH, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    y[SPIKE_BATCH * BATCH:(SPIKE_BATCH + 1) * BATCH] *= 1e3
    return x, y


def _model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
    return model


class _Recorder(keras.callbacks.Callback):
    """The model's and the leaf optimizer's variables before and after every batch."""

    def __init__(self):
        super().__init__()
        self.before, self.after = [], []

    def _state(self):
        leaf = control.leaf_optimizers(self.model.optimizer)[0]
        return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in self.model.variables + leaf.variables]

    def on_train_batch_begin(self, batch, logs=None):
        self.before.append(self._state())

    def on_train_batch_end(self, batch, logs=None):
        self.after.append(self._state())


def _assert_equal_states(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _assert_differ(a, b):
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))


def _fit(callback, epochs=1, fit_with="model", initial_epoch=0):
    x, y = _data()
    model = _model()
    recorder = _Recorder()
    callbacks = [callback, recorder]
    if fit_with == "trainer":
        history = Trainer.from_compiled(model, shuffle=False).fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0,
                                                   callbacks=callbacks)
    else:
        history = model.fit(x, y, batch_size=BATCH, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
                            verbose=0, callbacks=callbacks)
    return model, recorder, history


@pytest.mark.parametrize("fit_with", ["model", "trainer"])
def test_skip_leaves_the_weights_and_optimizer_state_as_before_the_batch(fit_with):
    callback = SpikeDetection(policy="skip", warmup=2)
    _, recorder, history = _fit(callback, fit_with=fit_with)
    assert [(s["epoch"], s["step"]) for s in callback.spikes] == [(0, SPIKE_BATCH)]
    _assert_equal_states(recorder.before[SPIKE_BATCH], recorder.after[SPIKE_BATCH])
    _assert_differ(recorder.before[SPIKE_BATCH - 1], recorder.after[SPIKE_BATCH - 1])
    assert len(recorder.after) == 12, "skip must not stop training"
    assert history.history["spikes"] == [1.0]


def test_the_recorded_loss_is_the_batch_loss_at_the_weights_before_it():
    callback = SpikeDetection(policy="skip", warmup=2)
    model, recorder, _ = _fit(callback)
    x, y = _data()
    n = len(model.variables)
    model.set_weights(recorder.before[SPIKE_BATCH][:n])
    rows = slice(SPIKE_BATCH * BATCH, (SPIKE_BATCH + 1) * BATCH)
    expected = float(np.mean((model.predict(x[rows], verbose=0) - y[rows]) ** 2))
    assert callback.spikes[0]["loss"] == pytest.approx(expected, rel=1e-4)


def test_restore_rolls_back_to_the_last_snapshot():
    callback = SpikeDetection(policy="restore", warmup=2, snapshot_every=4)
    _, recorder, _ = _fit(callback)
    assert [s["step"] for s in callback.spikes] == [SPIKE_BATCH]
    # Good batches 0..5: snapshots after the 4th (batch 3); batches 4, 5 and the spike are undone.
    _assert_equal_states(recorder.after[SPIKE_BATCH], recorder.after[3])
    _assert_differ(recorder.after[SPIKE_BATCH], recorder.before[SPIKE_BATCH])
    assert len(recorder.after) == 12


def test_stop_stops_after_the_spiking_batch():
    callback = SpikeDetection(policy="stop", warmup=2)
    model, recorder, _ = _fit(callback, epochs=3)
    assert len(recorder.after) == SPIKE_BATCH + 1
    assert model.stop_training


def test_max_consecutive_stops_a_run_of_spikes():
    x, y = _data()
    y[SPIKE_BATCH * BATCH:] = 1e4
    model = _model()
    callback = SpikeDetection(policy="skip", warmup=2, max_consecutive=3)
    recorder = _Recorder()
    model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[callback, recorder])
    assert [s["step"] for s in callback.spikes] == [SPIKE_BATCH, SPIKE_BATCH + 1, SPIKE_BATCH + 2]
    assert len(recorder.after) == SPIKE_BATCH + 3
    _assert_equal_states(recorder.after[-1], recorder.before[SPIKE_BATCH])


def test_a_resumed_run_skips_the_recorded_batches(tmp_path):
    path = str(tmp_path / "spikes.npz")
    first = SpikeDetection(policy="stop", warmup=2, state_path=path)
    _fit(first, epochs=2)
    arrays, meta, _ = load_checkpoint(path)
    assert [(s["epoch"], s["step"]) for s in meta["spikes"]] == [(0, SPIKE_BATCH)]
    assert len(arrays[0]) == SPIKE_BATCH  # the window of good losses

    # The resumed run (from the same start) undoes the recorded batch, without detecting it:
    # an rtol this large would never call it a spike.
    resumed = SpikeDetection(policy="stop", warmup=2, rtol=1e9, state_path=path)
    _, recorder, _ = _fit(resumed, epochs=2)
    _assert_equal_states(recorder.before[SPIKE_BATCH], recorder.after[SPIKE_BATCH])
    assert len(recorder.after) == 24
    assert resumed.spikes == meta["spikes"]

    ignoring = SpikeDetection(policy="stop", warmup=2, rtol=1e9, state_path=path, skip_recorded=False)
    _, recorder, _ = _fit(ignoring, epochs=1)
    _assert_differ(recorder.before[SPIKE_BATCH], recorder.after[SPIKE_BATCH])


def test_a_foreign_state_file_is_refused(tmp_path):
    from keras_trainkit.utils.checkpoints import CheckpointError, save_checkpoint

    path = str(tmp_path / "other.npz")
    save_checkpoint(path, [np.zeros(3)], {"kind": "something else"})
    with pytest.raises(CheckpointError, match="not a SpikeDetection record"):
        _fit(SpikeDetection(state_path=path))


def test_config_round_trip_and_state_reset():
    callback = SpikeDetection(policy="restore", window=5, warmup=3, atol=0.1, rtol=None, snapshot_every=7,
                              max_consecutive=None, state_path="s.npz", skip_recorded=False)
    assert SpikeDetection.from_config(callback.get_config()).get_config() == callback.get_config()
    skip = SpikeDetection(policy="skip", warmup=2)
    _fit(skip)
    _fit(skip)
    assert len(skip.spikes) == 1, "on_train_begin must reset the record"


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"policy": "ignore"}, ValueError, r"Argument `policy` must be one of 'stop', 'skip', 'restore'. "
                                           r"Received: policy='ignore'"),
        ({"window": 0}, ValueError, r"Argument `window` must be > 0. Received: window=0"),
        ({"warmup": 1.5}, TypeError, r"Argument `warmup` must be an integer"),
        ({"atol": -1.0}, ValueError, r"Argument `atol` must be > 0.0. Received: atol=-1.0"),
        ({"rtol": 0.0}, ValueError, r"Argument `rtol` must be > 0.0. Received: rtol=0.0"),
        ({"rtol": None}, ValueError, r"Argument `rtol` must be set when `atol` is None.*Received: rtol=None"),
        ({"snapshot_every": 0}, ValueError, r"Argument `snapshot_every` must be > 0"),
        ({"max_consecutive": 0}, ValueError, r"Argument `max_consecutive` must be > 0"),
        ({"state_path": 3}, TypeError, r"Argument `state_path` must be of type str or PathLike"),
        ({"state_path": "spikes.json"}, ValueError, r"Argument `state_path` must end in '.npz'"),
        ({"skip_recorded": 1}, TypeError, r"Argument `skip_recorded` must be of type bool"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SpikeDetection(**kwargs)


def test_skip_under_mirrored_strategy_and_steps_per_execution():
    """Two replicas (the loss tracker sums them) and one call of 2 steps per batch hook."""
    from tests.conftest import mirrored_two_cpus

    x, y = _data()
    with mirrored_two_cpus().scope():
        model = _model()
    recorder = _Recorder()
    callback = SpikeDetection(policy="skip", warmup=2)
    model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[callback, recorder])
    assert [s["step"] for s in callback.spikes] == [SPIKE_BATCH]
    _assert_equal_states(recorder.before[SPIKE_BATCH], recorder.after[SPIKE_BATCH])

    model = _model()
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse", steps_per_execution=2)
    recorder = _Recorder()
    callback = SpikeDetection(policy="skip", warmup=2)
    model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[callback, recorder])
    assert len(callback.spikes) == 1 and len(recorder.after) == 6  # the hooks see calls of 2 steps
    call = [i for i, a in enumerate(recorder.after) if np.array_equal(a[0], recorder.before[i][0])]
    assert call == [SPIKE_BATCH // 2]
