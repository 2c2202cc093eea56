"""A trial's epoch checkpoint: one file in the one checkpoint format, restored exactly,
never into another trial or model; folders of the older format (``resume.json``
naming ``epoch_<k>.weights.h5``) still resume."""

import json

import keras
import numpy as np
import pytest

from keras_trainkit.tuning.epoch_checkpoint import (
    CHECKPOINT_FILE,
    DamagedCheckpoint,
    EpochCheckpoint,
    check_restorable,
    read_resume_state,
)
from keras_trainkit.utils.checkpoints import CheckpointError, load_checkpoint, save_checkpoint

X = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
Y = np.random.default_rng(1).normal(size=(64, 1)).astype("float32")
HYPERPARAMETERS = {"space": [], "values": {"width": 8, "learning_rate": 0.01}}


def _model(seed=0, width=8):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(width, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def _fit(model, epochs, initial_epoch=0, callbacks=()):
    model.fit(X, Y, batch_size=16, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
              verbose=0, callbacks=list(callbacks))
    return model


def _checkpoint(folder, restore=False, trial_id="3", **kwargs):
    return EpochCheckpoint(str(folder), restore=restore, trial_id=trial_id,
                           hyperparameters=HYPERPARAMETERS, **kwargs)


def _same_state(a, b):
    for left, right in zip(a.variables + a.optimizer.variables, b.variables + b.optimizer.variables):
        np.testing.assert_allclose(np.asarray(left), np.asarray(right), rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def uninterrupted():
    return _fit(_model(), 4)


def test_the_checkpoint_is_one_file_in_the_one_format(tmp_path):
    model = _fit(_model(), 2, callbacks=[_checkpoint(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]
    arrays, meta, _ = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert meta["kind"] == "tuner_trial" and meta["trial_id"] == "3" and meta["epoch"] == 1
    assert meta["hyperparameters"] == HYPERPARAMETERS and meta["execution"] == 0
    variables = model.variables + model.optimizer.variables
    assert len(arrays) == len(variables)
    for array, variable in zip(arrays, variables):
        np.testing.assert_array_equal(array, np.asarray(variable))
    state = read_resume_state(str(tmp_path))
    assert (state.trial_id, state.epoch, state.values) == ("3", 1, HYPERPARAMETERS["values"])


def test_a_resume_continues_exactly_as_the_uninterrupted_run(tmp_path, uninterrupted):
    _fit(_model(), 2, callbacks=[_checkpoint(tmp_path)])
    resumed = _fit(_model(seed=1), 4, initial_epoch=2, callbacks=[_checkpoint(tmp_path, restore=True)])
    _same_state(resumed, uninterrupted)


def _old_format_folder(folder, epoch=1, trial_id="3", weights=None):
    """A trial folder as keras_trainkit wrote it before checkpoint.npz, made by hand."""
    model = _fit(_model(), epoch + 1)
    weights = weights or f"epoch_{epoch}.weights.h5"
    model.save_weights(str(folder / weights))
    state = {"trial_id": trial_id, "hyperparameters": HYPERPARAMETERS, "execution": 0,
             "epoch": epoch, "weights": weights, "best_value": 0.5, "reported": True,
             "histories": []}
    (folder / "resume.json").write_text(json.dumps(state))
    return weights


def test_an_old_format_folder_resumes_and_is_converted(tmp_path, uninterrupted):
    _old_format_folder(tmp_path)
    state = read_resume_state(str(tmp_path))
    assert (state.trial_id, state.epoch, state.best_value, state.legacy) == ("3", 1, 0.5, True)
    check_restorable(str(tmp_path), state)
    assert EpochCheckpoint.last_epoch(str(tmp_path)) == 1
    resumed = _fit(_model(seed=1), 4, initial_epoch=2, callbacks=[_checkpoint(tmp_path, restore=True)])
    _same_state(resumed, uninterrupted)
    # the next epoch end wrote the one format and removed the older files
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]
    assert read_resume_state(str(tmp_path)).epoch == 3


def test_an_old_format_folder_with_truncated_weights_names_the_file(tmp_path):
    weights = _old_format_folder(tmp_path)
    path = tmp_path / weights
    path.write_bytes(path.read_bytes()[:500])
    state = read_resume_state(str(tmp_path))
    with pytest.raises(DamagedCheckpoint, match=f"{weights}.*unreadable"):
        check_restorable(str(tmp_path), state)


@pytest.mark.parametrize("weights", ["../epoch_1.weights.h5", "checkpoint.weights.h5", "x.npz"])
def test_an_old_resume_file_naming_another_file_is_refused(tmp_path, weights):
    _old_format_folder(tmp_path, weights="epoch_1.weights.h5")
    state = json.loads((tmp_path / "resume.json").read_text())
    state["weights"] = weights
    (tmp_path / "resume.json").write_text(json.dumps(state))
    with pytest.raises(DamagedCheckpoint, match="resume.json.*not a weights file"):
        read_resume_state(str(tmp_path))


def test_a_checkpoint_of_another_trial_is_not_restored(tmp_path):
    _fit(_model(), 2, callbacks=[_checkpoint(tmp_path, trial_id="0")])
    with pytest.raises(CheckpointError, match=f"{CHECKPOINT_FILE}.*trial '0'.*not restored"):
        _fit(_model(seed=1), 4, initial_epoch=2,
             callbacks=[_checkpoint(tmp_path, restore=True, trial_id="1")])


def test_a_checkpoint_of_another_model_is_refused_naming_the_file(tmp_path):
    _fit(_model(), 2, callbacks=[_checkpoint(tmp_path)])
    with pytest.raises(CheckpointError, match=f"{CHECKPOINT_FILE}.*other variables"):
        _fit(_model(width=16), 4, initial_epoch=2, callbacks=[_checkpoint(tmp_path, restore=True)])


@pytest.mark.parametrize("meta, problem", [
    ({"kind": "swa", "n_averaged": 1}, "not a tuner trial's checkpoint"),
    ({"kind": "tuner_trial", "trial_id": "3", "hyperparameters": {}, "execution": 0,
      "epoch": -1, "reported": False, "histories": []}, "negative epoch"),
    ({"kind": "tuner_trial", "trial_id": 3, "hyperparameters": {}, "execution": 0,
      "epoch": 1, "reported": False, "histories": []}, "'trial_id' is 3"),
])
def test_a_foreign_or_incomplete_checkpoint_is_damaged(tmp_path, meta, problem):
    save_checkpoint(tmp_path / CHECKPOINT_FILE, [np.zeros(3)], meta)
    with pytest.raises(DamagedCheckpoint, match=f"{CHECKPOINT_FILE}.*{problem}"):
        read_resume_state(str(tmp_path))


@pytest.mark.parametrize("cut", ["truncated", "flipped"])
def test_a_damaged_checkpoint_is_refused_without_loading(tmp_path, cut):
    _fit(_model(), 1, callbacks=[_checkpoint(tmp_path)])
    path = tmp_path / CHECKPOINT_FILE
    data = path.read_bytes()
    if cut == "truncated":
        data = data[: len(data) // 2]
    else:  # a byte inside the first array's data: only its CRC tells
        offset = data.index(b"a0.npy") + 200
        data = data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]
    path.write_bytes(data)
    with pytest.raises(DamagedCheckpoint, match=f"{CHECKPOINT_FILE}: it is damaged"):
        read_resume_state(str(tmp_path))
    assert EpochCheckpoint.last_epoch(str(tmp_path)) is None


def _trainer(seed):
    """A Trainer whose state outside the model and optimizer changes what it trains: AutoClip's
    history of gradient norms, and a partial sum carried across epochs (4 batches, 3 per step)."""
    from keras_trainkit.optimizers import transforms
    from keras_trainkit.training import Trainer

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    return Trainer(model, keras.optimizers.Adam(0.01), "mse", gradient_transforms=[transforms.AutoClip(10)],
                   gradient_accumulation_steps=3, shuffle=False)


def test_a_trial_trained_by_a_trainer_resumes_with_the_trainers_whole_state(tmp_path):
    """A HyperModel whose ``fit`` runs a ``Trainer``: the trial's checkpoint holds what the
    Trainer's own checkpoints hold (its transforms' state, partial sum and skip count too),
    so the resumed trial ends where the uninterrupted one does."""
    uninterrupted = _trainer(0)
    uninterrupted.fit(X, Y, batch_size=16, epochs=4, verbose=0)
    first = _trainer(0)
    first.fit(X, Y, batch_size=16, epochs=2, verbose=0, callbacks=[_checkpoint(tmp_path)])
    arrays, _, _ = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert len(arrays) == len(first._checkpoint_variables())
    resumed = _trainer(1)
    resumed.fit(X, Y, batch_size=16, epochs=4, initial_epoch=2, verbose=0,
                callbacks=[_checkpoint(tmp_path, restore=True)])
    expected, actual = uninterrupted._checkpoint_variables(), resumed._checkpoint_variables()
    assert len(actual) == len(expected)
    for left, right in zip(actual, expected):
        np.testing.assert_allclose(np.asarray(left), np.asarray(right), rtol=1e-6, atol=1e-7)
