"""An SWA ``state_path`` resumes only the run it belongs to.

The file outlives the run that wrote it. Before, a new run with the same
``state_path`` (the script run again after it finished, or the next trial of a
tuning search) read a finished run's average, skipped the epochs that average
already held, and ended with that run's weights: here exactly the first run's.
Now the average read must end before the epoch this ``fit`` starts from (the
interrupted run's resume point); a file that does not is refused before any step,
naming it, and nothing is changed. A ``fit`` that starts after ``start_epoch`` with
no average to resume says that its average holds only its own epochs.
"""

import logging

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import SWA
from keras_trainkit.utils.checkpoints import CheckpointError, load_checkpoint


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, (x @ rng.normal(size=(4, 1))).astype("float32")


def _model(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def _fit(model, callbacks, initial_epoch=0):
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=4, initial_epoch=initial_epoch, verbose=0, shuffle=False,
              callbacks=callbacks)
    return model


def test_a_finished_runs_state_is_refused_by_a_new_run(tmp_path):
    state = tmp_path / "swa.npz"
    _fit(_model(0), [SWA(start_epoch=1, state_path=state)])
    written = state.read_bytes()
    model = _model(1)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(CheckpointError, match=r"swa\.npz.*epochs 2, 3, 4.*starts at epoch 1"):
        _fit(model, [SWA(start_epoch=1, state_path=state)])
    assert state.read_bytes() == written  # nothing overwritten
    for a, b in zip(model.get_weights(), before):  # no step taken
        np.testing.assert_array_equal(a, b)
    # deleted, the new run averages its own epochs, as a run without a state file does
    state.unlink()
    fresh = _fit(_model(1), [SWA(start_epoch=1, state_path=state)])
    alone = _fit(_model(1), [SWA(start_epoch=1)])
    for a, b in zip(fresh.get_weights(), alone.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    _, meta, _ = load_checkpoint(state)
    assert meta["averaged_epochs"] == [1, 2, 3]


def test_a_state_ahead_of_the_resume_point_is_refused(tmp_path):
    """A backup of epoch 2 with an average that already holds epoch 3: not the same run."""
    state = tmp_path / "swa.npz"
    _fit(_model(0), [SWA(start_epoch=1, state_path=state)])
    with pytest.raises(CheckpointError, match=r"starts at epoch 3"):
        _fit(_model(0), [SWA(start_epoch=1, state_path=state)], initial_epoch=2)


def test_a_fit_starting_after_start_epoch_without_an_average_says_so(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="keras_trainkit.callbacks.swa"):
        _fit(_model(0), [SWA(start_epoch=1, state_path=tmp_path / "none_yet.npz")], initial_epoch=2)
    [warning] = [r.getMessage() for r in caplog.records if "no average" in r.getMessage()]
    assert "epoch 3" in warning and "epochs 2 to 2" in warning and "state_path" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="keras_trainkit.callbacks.swa"):
        _fit(_model(0), [SWA(start_epoch=2)], initial_epoch=2)  # nothing before it was due
    assert not [r for r in caplog.records if "no average" in r.getMessage()]
