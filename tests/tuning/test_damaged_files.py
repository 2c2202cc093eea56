"""A saved search with damaged files: each damaged trial is reported, set aside and
run again (or the search refuses, naming the file), and the rest survives."""

import json
import threading
import time
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import pytest

from keras_trainkit import datasets, tuning
from keras_trainkit._compat import keras_tuner as kt_compat
from keras_trainkit.utils.checkpoints import load_checkpoint, save_checkpoint

EPOCHS = 4


@pytest.fixture(scope="module")
def data():
    (x, y), _ = datasets.load_mnist1d()
    return (x[:256], y[:256]), (x[3000:3128], y[3000:3128])


def _recipe():
    return tuning.RecipeHyperModel(
        (40,), 10, architecture=tuning.MLPSpace(depth=(1, 1), widths=(8, 16, 32)),
        training=tuning.TrainingSpace(batch_sizes=(128,), epochs=EPOCHS, clipping=False))


def _tuner(folder, max_trials=2):
    return tuning.RandomSearch(_recipe(), max_trials=max_trials, seed=5, directory=str(folder),
                               project_name="search")


class _Interrupt(keras.callbacks.Callback):
    """Stops the whole search, as a kill would, in trial ``trial_id`` at epoch ``epoch``."""

    def __init__(self, folder, trial_id, epoch):
        super().__init__()
        self.folder, self.trial_id, self.epoch = str(folder), trial_id, epoch

    def on_epoch_end(self, epoch, logs=None):
        started = list(Path(self.folder, "search").glob("trial_*/runner.json"))
        if epoch == self.epoch and len(started) == int(self.trial_id) + 1:
            raise KeyboardInterrupt("stopped by the test")


def _search(tuner, data, callbacks=()):
    (x, y), validation = data
    tuner.search(x, y, validation_data=validation, callbacks=list(callbacks), verbose=0)


def _interrupted_search(folder, data):
    """Trial 1 stopped at the end of epoch 4 (of 4), before that epoch was recorded
    or checkpointed: its checkpoint is after epoch 3. Returns its arrays and state."""
    with pytest.raises(KeyboardInterrupt):
        _search(_tuner(folder), data, [_Interrupt(folder, "1", 3)])
    arrays, state, _ = load_checkpoint(folder / "search" / "trial_1" / "checkpoint.npz")
    assert state["epoch"] == 2 and state["trial_id"] == "1"
    return arrays, state


def _record(folder, trial_id):
    return json.loads((folder / "search" / f"trial_{trial_id}" / "trial.json").read_text())


def _steps(record):
    observations = record["metrics"]["metrics"]["val_accuracy"]["observations"]
    assert all(len(obs["value"]) == 1 for obs in observations), observations  # none twice
    return [obs["step"] for obs in observations]


@pytest.mark.parametrize("damage", ["early end", "double count", "other trial", "weights"])
def test_bad_resume_state_restarts_the_trial_clean(tmp_path, data, capsys, damage):
    arrays, state = _interrupted_search(tmp_path, data)
    folder = tmp_path / "search" / "trial_1"
    values = _record(tmp_path, "1")["hyperparameters"]["values"]
    if damage == "early end":  # would end the trial without training its last epoch
        state["epoch"] = 3
    elif damage == "double count":  # would train and report epochs 2 and 3 again
        state["epoch"] = 0
    elif damage == "other trial":
        state["hyperparameters"]["values"]["width"] = 8 if values["width"] != 8 else 16
    path = folder / "checkpoint.npz"
    if damage == "weights":
        path.write_bytes(path.read_bytes()[:500])
    else:
        save_checkpoint(path, arrays, state)

    _search(_tuner(tmp_path), data)
    printed = capsys.readouterr().out
    assert "Trial 1: its checkpoint is not resumable" in printed
    assert list(folder.glob("damaged_*/checkpoint.npz"))
    record = _record(tmp_path, "1")
    assert record["status"] == "COMPLETED" and record["hyperparameters"]["values"] == values
    assert _steps(record) == list(range(EPOCHS))


def test_another_trials_checkpoint_is_not_restored(tmp_path, data, capsys):
    """Trial 0's checkpoint put into trial 1's folder, at the epoch trial 1 reached:
    only the recorded trial id and hyperparameters tell it apart."""
    _interrupted_search(tmp_path, data)
    project = tmp_path / "search"
    arrays, state, _ = load_checkpoint(project / "trial_0" / "checkpoint.npz")
    assert state["trial_id"] == "0"
    save_checkpoint(project / "trial_1" / "checkpoint.npz", arrays, {**state, "epoch": 2})
    values = _record(tmp_path, "1")["hyperparameters"]["values"]

    _search(_tuner(tmp_path), data)
    printed = capsys.readouterr().out
    assert "Trial 1: its checkpoint is not resumable" in printed
    assert "trial '0''s with other hyperparameters" in printed
    assert "resuming" not in printed
    assert list((project / "trial_1").glob("damaged_*/checkpoint.npz"))
    record = _record(tmp_path, "1")
    assert record["status"] == "COMPLETED" and record["hyperparameters"]["values"] == values
    assert _steps(record) == list(range(EPOCHS))


class _OldFormatWriter(keras.callbacks.Callback):
    """What keras_trainkit wrote every epoch before checkpoint.npz, by hand:
    ``epoch_<k>.weights.h5`` (``model.save_weights``) and a ``resume.json`` naming it,
    into ``<folder>/old/trial_<id>/`` (the new writer would remove them from the
    trial folder)."""

    def __init__(self, folder):
        super().__init__()
        self.project = Path(folder, "search")
        self.staging = Path(folder, "old")

    def on_epoch_end(self, epoch, logs=None):
        trial_id = str(len(list(self.project.glob("trial_*/runner.json"))) - 1)
        record = json.loads((self.project / f"trial_{trial_id}" / "trial.json").read_text())
        folder = self.staging / f"trial_{trial_id}"
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("epoch_*.weights.h5"):
            old.unlink()
        self.model.save_weights(str(folder / f"epoch_{epoch}.weights.h5"))
        state = {"trial_id": trial_id, "hyperparameters": record["hyperparameters"],
                 "execution": 0, "epoch": epoch, "weights": f"epoch_{epoch}.weights.h5",
                 "best_value": None, "reported": True, "histories": []}
        (folder / "resume.json").write_text(json.dumps(state))


def _old_format_search(folder, data):
    """Trial 1 stopped as in :func:`_interrupted_search`, its folders as the older
    version left them (no checkpoint.npz)."""
    with pytest.raises(KeyboardInterrupt):
        _search(_tuner(folder), data, [_Interrupt(folder, "1", 3), _OldFormatWriter(folder)])
    project = folder / "search"
    for path in project.glob("trial_*/checkpoint.npz"):
        path.unlink()
    for path in (folder / "old").glob("trial_*/*"):
        path.rename(project / path.parent.name / path.name)
    assert json.loads((project / "trial_1" / "resume.json").read_text())["epoch"] == 2
    return project


def test_an_old_format_checkpoint_resumes(tmp_path, data, capsys):
    project = _old_format_search(tmp_path, data)
    capsys.readouterr()
    _search(_tuner(tmp_path), data)
    assert "Trial 1: resuming from its checkpoint after epoch 3." in capsys.readouterr().out
    record = _record(tmp_path, "1")
    assert record["status"] == "COMPLETED" and _steps(record) == list(range(EPOCHS))
    names = sorted(p.name for p in (project / "trial_1").iterdir())
    assert "checkpoint.npz" in names and "resume.json" not in names
    assert not [n for n in names if n.startswith("epoch_")]


def test_an_old_format_checkpoint_with_damaged_weights_restarts_clean(tmp_path, data, capsys):
    project = _old_format_search(tmp_path, data)
    path = project / "trial_1" / "epoch_2.weights.h5"
    path.write_bytes(path.read_bytes()[:500])
    capsys.readouterr()
    _search(_tuner(tmp_path), data)
    printed = capsys.readouterr().out
    assert "Trial 1: its checkpoint is not resumable" in printed and "epoch_2.weights.h5" in printed
    assert list((project / "trial_1").glob("damaged_*/resume.json"))
    assert list((project / "trial_1").glob("damaged_*/epoch_2.weights.h5"))
    assert _steps(_record(tmp_path, "1")) == list(range(EPOCHS))


def test_interrupted_trial_resumes_and_says_so(tmp_path, data, capsys):
    _interrupted_search(tmp_path, data)
    _search(_tuner(tmp_path), data)
    assert "Trial 1: resuming from its checkpoint after epoch 3." in capsys.readouterr().out
    assert _steps(_record(tmp_path, "1")) == list(range(EPOCHS))


@pytest.fixture
def finished(tmp_path, data):
    _search(_tuner(tmp_path), data)
    return tmp_path


def test_damaged_trial_record_is_run_again(finished, data, capsys):
    path = finished / "search" / "trial_1" / "trial.json"
    values = json.loads(path.read_text())["hyperparameters"]["values"]
    path.write_text(path.read_text()[:200])
    tuner = _tuner(finished)
    printed = capsys.readouterr().out
    assert "Trial 1: its trial.json is damaged" in printed and "runs again" in printed
    assert list((finished / "search" / "trial_1").glob("damaged_*/trial.json"))
    _search(tuner, data)
    record = _record(finished, "1")
    assert record["status"] == "COMPLETED" and record["hyperparameters"]["values"] == values
    assert _steps(record) == list(range(EPOCHS))
    assert _record(finished, "0")["status"] == "COMPLETED"
    assert len(tuner.oracle.trials) == 2


def test_damaged_trial_record_without_its_hyperparameters_is_refused(finished):
    folder = finished / "search" / "trial_1"
    (folder / "trial.json").write_bytes(b"\x00garbage")
    (folder / "checkpoint.npz").unlink()
    with pytest.raises(RuntimeError, match=r"trial_1/trial.json cannot be used .*overwrite=True"):
        _tuner(finished)


@pytest.mark.parametrize("contents", [[], ["trial.json.tmp-12345"]])
def test_a_trial_folder_being_created_is_left_to_its_maker(finished, data, capsys, contents):
    """A folder made for a new trial whose record is not yet written (another worker
    creating it, or a process stopped in between) is not damage: the search reloads
    without refusing, and the stopped process's trial id is handed out again."""
    folder = finished / "search" / "trial_2"
    folder.mkdir()
    for name in contents:
        (folder / name).write_bytes(b'{"trial_id": "2", "hyperpa')
    tuner = _tuner(finished, max_trials=3)
    assert "Trial 2" not in capsys.readouterr().out
    _search(tuner, data)
    assert _record(finished, "2")["status"] == "COMPLETED"
    assert _steps(_record(finished, "2")) == list(range(EPOCHS))
    assert sorted(tuner.oracle.trials) == ["0", "1", "2"]


def test_a_trial_recorded_but_not_in_the_oracle_file_runs_again(finished, data, capsys):
    """A kill between writing a new trial's trial.json and oracle.json: the trial
    runs again with its recorded hyperparameters."""
    record = _record(finished, "1")
    values = record["hyperparameters"]["values"]
    fresh = {**record, "trial_id": "2", "status": "RUNNING", "score": None, "best_step": 0,
             "metrics": {"metrics": {}}, "message": None}
    (finished / "search" / "trial_2").mkdir()
    (finished / "search" / "trial_2" / "trial.json").write_text(json.dumps(fresh))
    tuner = _tuner(finished, max_trials=3)
    assert "Trial 2 was started but is not in oracle.json" in capsys.readouterr().out
    _search(tuner, data)
    record = _record(finished, "2")
    assert record["status"] == "COMPLETED" and record["hyperparameters"]["values"] == values
    assert _steps(record) == list(range(EPOCHS))
    assert sorted(tuner.oracle.trials) == ["0", "1", "2"]


def test_a_listed_trials_emptied_folder_is_refused(finished):
    folder = finished / "search" / "trial_1"
    for path in folder.iterdir():
        if path.is_file():
            path.unlink()
    with pytest.raises(RuntimeError, match=r"trial_1/trial.json cannot be used \(its trial.json "
                                           r"is missing\)"):
        _tuner(finished)


@pytest.mark.parametrize("tuner_class", ["ours", "KerasTuner's, wrapped"])
@pytest.mark.parametrize("name", ["tuner0.json", "oracle.json", "trial_0/trial.json"])
def test_search_files_are_never_read_half_written(tmp_path, tuner_class, name):
    """A worker starting beside a running search reads its files while the search
    rewrites them (after every trial; trial.json after every epoch): it must read the
    old file or the new one, also with a KerasTuner tuner's own oracle. With
    KerasTuner's in-place writes, 4-7% of such reads of tuner0.json here found it
    empty or cut short."""
    if tuner_class == "ours":
        tuner = _tuner(tmp_path)
    else:
        tuner = tuning.trainkit_tuner(keras_tuner.RandomSearch)(
            _recipe(), objective="val_accuracy", max_trials=2, seed=5,
            directory=str(tmp_path), project_name="search")
    trial = tuner.oracle.create_trial("tuner0")
    save = {"tuner0.json": tuner.save, "oracle.json": tuner.oracle.save,
            "trial_0/trial.json": lambda: kt_compat.save_trial_record(tuner.oracle, trial)}[name]
    save()
    path = tmp_path / "search" / name
    stop = threading.Event()

    def save_again_and_again():
        while not stop.is_set():
            save()

    saver = threading.Thread(target=save_again_and_again)
    saver.start()
    reads, unreadable = 0, 0
    try:
        deadline = time.time() + 1.5
        while time.time() < deadline:
            try:
                json.loads(path.read_bytes())
                reads += 1
            except ValueError:
                unreadable += 1
    finally:
        stop.set()
        saver.join()
    assert reads > 500 and unreadable == 0, (reads, unreadable)


def test_damaged_oracle_file_is_refused_with_its_name(finished):
    path = finished / "search" / "oracle.json"
    path.write_text(path.read_text()[:100])
    with pytest.raises(RuntimeError, match=r"search/oracle.json is damaged"):
        _tuner(finished)


def test_damaged_tuner_file_is_set_aside(finished, data, capsys):
    path = finished / "search" / "tuner0.json"
    path.write_text("{not json")
    tuner = _tuner(finished)
    assert "tuner0.json was damaged" in capsys.readouterr().out
    assert json.loads(path.read_text()) == {}
    _search(tuner, data)  # nothing to run again
    assert len(tuner.oracle.trials) == 2
    assert all(t.status == "COMPLETED" for t in tuner.oracle.trials.values())


def test_damaged_best_weights(finished, data, capsys):
    tuner = _tuner(finished)
    best = tuner.oracle.get_best_trials(2)
    path = finished / "search" / f"trial_{best[0].trial_id}" / "checkpoint.weights.h5"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="checkpoint.weights.h5 cannot be loaded"):
        tuner.load_model(best[0])
    with pytest.warns(UserWarning, match="Left out of the ensemble"):
        ensemble = tuning.ensemble_best_models(tuner, 2)
    assert [layer.name for layer in ensemble.layers if isinstance(layer, keras.Model)] == [
        f"trial_{best[1].trial_id}"]

    capsys.readouterr()
    tuner = _tuner(finished)  # the resumed search runs that trial again
    assert f"Trial {best[0].trial_id}: its best-epoch weights are damaged" in capsys.readouterr().out
    _search(tuner, data)
    model = tuner.load_model(tuner.oracle.get_trial(best[0].trial_id))
    assert np.all(np.isfinite(model.predict(data[1][0][:4], verbose=0)))
