"""SIGKILL a running search and rerun it: nothing lost, nothing run twice, the
interrupted trial continues from its last epoch checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest

from keras_trainkit import datasets, tuning
from keras_trainkit.tuning.tuners import EpochCheckpoint, before_checkpoint

SCRIPT = Path(__file__).with_name("_search_script.py")
ROOT = Path(__file__).resolve().parents[2]


def _run(directory, log, *extra, wait=True):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, str(SCRIPT), str(directory), str(log), *extra]
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _resume_epoch(project, trial_id):
    path = project / f"trial_{trial_id}" / "resume.json"
    try:
        return json.loads(path.read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["in_process"])
def test_sigkill_then_rerun_resumes(tmp_path, mode):
    log = tmp_path / "starts.jsonl"
    project = tmp_path / "resume"
    extra = ["isolate"] if mode == "isolate" else []
    process = _run(tmp_path, log, *extra, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline:
        epoch = _resume_epoch(project, 1)
        if epoch is not None and epoch >= 1:
            break
        if process.poll() is not None:
            pytest.fail("the search ended before it could be killed")
        time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("trial 1 never reached epoch 1")
    process.send_signal(signal.SIGKILL)
    process.wait()
    if mode == "isolate":  # the orphaned trial process dies with its parent's pipe
        time.sleep(1.0)
    killed_at = _resume_epoch(project, 1)

    result = _run(tmp_path, log, *extra)
    assert result.returncode == 0, result.stderr[-3000:]

    starts = [json.loads(line) for line in log.read_text().splitlines()]
    first_run = starts[0]["run"]
    first = [s for s in starts if s["run"] == first_run]
    second = [s for s in starts if s["run"] != first_run]
    # the first run started trials 0 and 1 from scratch
    assert [s["initial_epoch"] for s in first] == [0, 0]
    # the rerun resumed trial 1 from its checkpoint, then ran trial 2 from scratch
    assert second[0]["values"] == first[1]["values"]
    assert second[0]["initial_epoch"] == killed_at + 1 > 0
    assert [s["initial_epoch"] for s in second[1:]] == [0]
    assert first[0]["values"] not in [s["values"] for s in second]  # trial 0 not rerun

    trials = sorted(project.glob("trial_*/trial.json"))
    assert len(trials) == 3
    for path in trials:
        trial = json.loads(path.read_text())
        assert trial["status"] == "COMPLETED"
        steps = [obs["step"] for obs in
                 trial["metrics"]["metrics"]["val_accuracy"]["observations"]]
        assert steps == sorted(set(steps)) == list(range(5)), (path, steps)


def _tiny_recipe(epochs):
    return tuning.RecipeHyperModel(
        (40,), 10, architecture=tuning.MLPSpace(depth=(1, 1), widths=(16,)),
        training=tuning.TrainingSpace(batch_sizes=(128,), epochs=epochs, clipping=False))


def test_each_epoch_reaches_the_oracle_before_its_checkpoint(tmp_path):
    """A kill between the two must never leave a checkpoint for an unrecorded epoch."""
    seen = []

    class Watching(tuning.RandomSearch):
        def report_epoch(self, trial, epoch, logs):
            checkpointed = EpochCheckpoint.last_epoch(self.get_trial_dir(trial.trial_id))
            seen.append((epoch, checkpointed))
            return super().report_epoch(trial, epoch, logs)

    (x, y), _ = datasets.load_mnist1d()
    tuner = Watching(_tiny_recipe(epochs=3), max_trials=1, seed=0, directory=str(tmp_path),
                     project_name="order")
    tuner.search(x[:256], y[:256], validation_data=(x[3000:3128], y[3000:3128]), verbose=0)
    assert seen == [(0, None), (1, 0), (2, 1)]


def test_before_checkpoint_needs_a_checkpoint_last():
    with pytest.raises(ValueError, match="callbacks"):
        before_checkpoint([keras.callbacks.History()], keras.callbacks.History())


_SAVE_ON_A_FULL_DISK = """
import resource, signal, sys
import keras_tuner
from keras_trainkit import tuning

oracle = tuning.PruningRandomSearchOracle(objective="val_accuracy", max_trials=2, seed=0)
oracle._set_project_dir(sys.argv[1], "atomic")
hp = keras_tuner.HyperParameters()
hp.Float("x", 0.0, 1.0)
oracle.update_space(hp)
trial = oracle.create_trial("tuner0")
oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5}, step=0)
oracle.save()
# From here on no file may grow past 64 KiB, as on a full disk.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
trial.message = "m" * 1_000_000
oracle.pruned_trials[trial.trial_id] = {"reason": "r" * 1_000_000}
for save in (lambda: oracle._save_trial(trial), oracle.save):
    try:
        save()
    except Exception:  # OSError here; KerasTuner's own writer raises its own type
        print("write failed")
"""


def test_oracle_files_survive_a_failed_write(tmp_path):
    """KerasTuner writes trial.json and oracle.json in place; ours are replaced
    whole, so a write cut short (full disk, kill) leaves the previous file."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", _SAVE_ON_A_FULL_DISK, str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.stdout.split("\n").count("write failed") == 2, result.stderr[-3000:]
    trial = json.loads((tmp_path / "atomic" / "trial_0" / "trial.json").read_text())
    assert trial["message"] is None
    assert trial["metrics"]["metrics"]["val_accuracy"]["observations"][0]["value"] == [0.5]
    oracle = json.loads((tmp_path / "atomic" / "oracle.json").read_text())
    assert oracle["pruned_trials"] == {}
