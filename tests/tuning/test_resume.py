"""SIGKILL a running search and rerun it: nothing lost, nothing run twice, the
interrupted trial continues from its last epoch checkpoint as the same trial,
in-process and with isolated trials, at every trial index including the first."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_trainkit import datasets, tuning
from keras_trainkit.tuning.epoch_checkpoint import EpochCheckpoint
from keras_trainkit.utils.checkpoints import read_checkpoint_meta

SCRIPT = Path(__file__).with_name("_search_script.py")
ROOT = Path(__file__).resolve().parents[2]


def _run(directory, log, *extra, wait=True, hold_at=None, output=None):
    """Run the search script; ``wait=False`` starts it and returns the process, its
    output going to the file ``output`` (or nowhere)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("HOLD_AT", None)
    if hold_at is not None:
        env["HOLD_AT"] = ",".join(str(part) for part in hold_at)
    command = [sys.executable, str(SCRIPT), str(directory), str(log), *extra]
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    with open(output or os.devnull, "w") as sink:
        return subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.DEVNULL)


def _resume_epoch(project, trial_id):
    path = project / f"trial_{trial_id}" / "checkpoint.npz"
    try:
        return read_checkpoint_meta(path)["epoch"]
    except (OSError, ValueError, KeyError, TypeError):  # CheckpointError is a ValueError
        return None


def _trial_started(project, trial_id):
    return (project / f"trial_{trial_id}" / "runner.json").exists()


def _logged_starts(log):
    """Trial starts the search script has logged in full (a line ends with its newline).
    ``log.exists()`` alone is true from the ``open``, before the line is written: a kill
    there left the first run without a start of its own."""
    return log.read_text().count("\n") if log.exists() else 0


def _trial_processes(search_pid):
    """Processes (other than the search) whose environment names this search run."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == search_pid:
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"SEARCH_RUN={search_pid}".encode() in environ:
            found.append(int(entry.name))
    return found


def _files_state(folder):
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _kill_when(process, ready, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return
        if process.poll() is not None:
            pytest.fail("the search ended before it could be killed")
        time.sleep(0.05)
    process.kill()
    pytest.fail("the search never reached the point to kill it")


def _run_and_kill(tmp_path, log, project, mode, hold_at, ready, output=None):
    """Run the search until ``ready()`` (it waits at ``hold_at``), then SIGKILL it; with
    isolated trials, also check that the trial's process died with it and wrote nothing
    more."""
    extra = ["isolate"] if mode == "isolate" else []
    process = _run(tmp_path, log, *extra, wait=False, hold_at=hold_at, output=output)
    if mode != "isolate":
        _kill_when(process, ready)
        return
    children = []

    def ready_with_child():
        if ready():
            children[:] = _trial_processes(process.pid)
            return bool(children)
        return False

    _kill_when(process, ready_with_child)
    killed = time.time()
    while _trial_processes(process.pid) and time.time() < killed + 5:
        time.sleep(0.05)
    assert not _trial_processes(process.pid), "the trial process outlived the search"
    before = _files_state(project)
    time.sleep(1.5)
    assert _files_state(project) == before


def _runs(log):
    """The logged trial starts, grouped by the search run that made them, in order."""
    runs = {}
    for line in log.read_text().splitlines():
        start = json.loads(line)
        runs.setdefault(start["run"], []).append(start)
    return list(runs.values())


def _assert_completed_once(project):
    """Three completed trials, each epoch recorded once."""
    trials = sorted(project.glob("trial_*/trial.json"))
    assert len(trials) == 3
    for path in trials:
        trial = json.loads(path.read_text())
        assert trial["status"] == "COMPLETED"
        observations = trial["metrics"]["metrics"]["val_accuracy"]["observations"]
        steps = [obs["step"] for obs in observations]
        assert steps == list(range(5)), (path, steps)
        assert all(len(obs["value"]) == 1 for obs in observations), path  # none twice


@pytest.mark.slow
def test_sigkill_in_the_first_epoch_then_rerun_starts_the_trial_again(tmp_path):
    """Killed during the first trial's first epoch, before any checkpoint."""
    log = tmp_path / "starts.jsonl"
    project = tmp_path / "resume"
    # The search waits at the first epoch of trial 0, so the kill lands there however busy
    # the machine.
    _run_and_kill(tmp_path, log, project, "in_process", hold_at=(0, 0),
                  ready=lambda: _trial_started(project, 0) and _logged_starts(log) > 0)
    assert _resume_epoch(project, 0) is None

    result = _run(tmp_path, log)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = _runs(log)
    assert [s["initial_epoch"] for s in first] == [0]
    # the rerun ran the interrupted trial again with its hyperparameters, from its first
    # epoch, then the remaining trials from scratch
    assert second[0]["values"] == first[0]["values"]
    assert [s["initial_epoch"] for s in second] == [0, 0, 0]
    assert "resuming" not in result.stdout
    _assert_completed_once(project)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["in_process", "isolate"])
def test_sigkill_in_each_trial_then_rerun_resumes(tmp_path, mode):
    """The search killed after epoch 2 of its first trial; the rerun, which resumes that
    trial, killed after epoch 2 of the second; the next after epoch 2 of the third; the
    last rerun resumes the third and finishes. Each kill point is checked as a search
    killed there once (in one chain, to start a third of the processes)."""
    log = tmp_path / "starts.jsonl"
    project = tmp_path / "resume"
    kill_at, killed_at, outputs = 1, [], []
    for trial_index in range(3):
        # The run waits at epoch kill_at + 1 of the trial; it starts the trial first, or
        # second after resuming the trial the last run was killed in.
        outputs.append(tmp_path / f"run_{trial_index}.out")
        _run_and_kill(tmp_path, log, project, mode, hold_at=(min(trial_index, 1), kill_at + 1),
                      ready=lambda: _resume_epoch(project, trial_index) in range(kill_at, 5),
                      output=outputs[-1])
        killed_at.append(_resume_epoch(project, trial_index))
    result = _run(tmp_path, log, *(["isolate"] if mode == "isolate" else []))
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [path.read_text() for path in outputs[1:]] + [result.stdout]

    runs = _runs(log)
    assert len(runs) == 4
    trials = [runs[0][0]] + [run[-1] for run in runs[1:3]]  # each trial's first start
    # the first run started trial 0 from scratch; each rerun resumed the trial the run
    # before was killed in, with its hyperparameters, from its checkpoint, then started
    # the next trial from scratch
    assert [s["initial_epoch"] for s in runs[0]] == [0]
    for trial_index, rerun in enumerate(runs[1:]):
        assert rerun[0]["values"] == trials[trial_index]["values"]
        assert rerun[0]["initial_epoch"] == killed_at[trial_index] + 1 > 0
        assert [s["initial_epoch"] for s in rerun[1:]] == [0] * (trial_index < 2)
        for earlier in trials[:trial_index]:  # finished trials are not run again
            assert earlier["values"] not in [s["values"] for s in rerun]
        # the rerun says what it resumed
        assert (f"Trial {trial_index}: resuming from its checkpoint after epoch "
                f"{killed_at[trial_index] + 1}" in printed[trial_index])
    _assert_completed_once(project)


def _tiny_recipe(epochs):
    return tuning.RecipeHyperModel(
        (40,), 10, architecture=tuning.MLPSpace(depth=(1, 1), widths=(16,)),
        training=tuning.TrainingSpace(batch_sizes=(128,), epochs=epochs, clipping=False))


class _WatchingOracle(tuning.PruningRandomSearchOracle):
    """Records, for every reported epoch, which epoch the checkpoint held then."""

    seen = []

    def update_trial(self, trial_id, metrics, step=0):
        folder = os.path.join(self._project_dir, f"trial_{trial_id}")
        self.seen.append((step, EpochCheckpoint.last_epoch(folder)))
        return super().update_trial(trial_id, metrics, step=step)


class _WatchingSearch(tuning.RandomSearch):
    oracle_class = _WatchingOracle


def test_each_epoch_reaches_the_oracle_before_its_checkpoint(tmp_path):
    """A kill between the two must never leave a checkpoint for an unrecorded epoch."""
    (x, y), _ = datasets.load_mnist1d()
    _WatchingOracle.seen = []
    tuner = _WatchingSearch(_tiny_recipe(epochs=3), max_trials=1, seed=0,
                            directory=str(tmp_path), project_name="order")
    tuner.search(x[:256], y[:256], validation_data=(x[3000:3128], y[3000:3128]), verbose=0)
    assert _WatchingOracle.seen == [(0, None), (1, 0), (2, 1)]


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
