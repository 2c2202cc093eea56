"""A search SIGKILLed after a pruned trial's last epoch checkpoint, before the trial
ended, and rerun: the trial ends as pruned at once, and every record (KerasTuner's
trials, ``oracle.pruned_trials``, the Optuna study) is the uninterrupted search's.

Each search is ``tests/tuning/_optuna_helpers.py``'s ``Synthetic`` hypermodel (score
``x * (epoch + 1)``), so which trial is pruned at which epoch is known. The killed
searches run in one subprocess, forked after its imports (one import for both), each
child killing itself with SIGKILL in the oracle's ``end_trial`` of the pruned trial;
the reruns and the uninterrupted searches run here.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras_tuner
import pytest

optuna = pytest.importorskip("optuna")

from keras_trainkit import tuning  # noqa: E402
from keras_trainkit.utils.checkpoints import read_checkpoint_meta  # noqa: E402
from tests.tuning._optuna_helpers import Synthetic  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]
ROOT = Path(__file__).resolve().parents[2]
CASES = ("median_rule", "optuna_pruner")

_KILLED_SEARCHES = """
import os, signal, sys, traceback
from tests.tuning.test_pruned_resume import CASES, make_tuner

def kill_at_pruned_end(oracle):
    end_trial = oracle.end_trial
    def end_or_die(trial):
        if trial.trial_id in oracle.pruned_trials:  # its epoch checkpoint is on disk
            os.kill(os.getpid(), signal.SIGKILL)
        return end_trial(trial)
    oracle.end_trial = end_or_die

children = {}
for case in CASES:  # no TensorFlow op has run in this process: each child starts clean
    pid = os.fork()
    if pid == 0:
        try:
            tuner = make_tuner(case, os.path.join(sys.argv[1], case))
            kill_at_pruned_end(tuner.oracle)
            tuner.search(verbose=0)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)
    children[case] = pid
for case, pid in children.items():
    _, status = os.waitpid(pid, 0)
    print(case, os.WTERMSIG(status) if os.WIFSIGNALED(status) else "exited", flush=True)
"""


def make_tuner(case, directory):
    """The search of ``case``: trial 0 (the larger ``x``) runs its 2 epochs; trial 1 is
    below the median at its first epoch and is pruned there, by our median rule on a
    KerasTuner tuner or by Optuna's on OptunaSearch."""
    common = dict(objective=keras_tuner.Objective("score", "max"), max_trials=2,
                  directory=str(directory), project_name="search")
    if case == "median_rule":
        return tuning.RandomSearch(
            Synthetic(epochs=2), seed=7,
            pruner=tuning.MedianPruner(startup_trials=1, warmup_epochs=0), **common)
    return tuning.OptunaSearch(
        Synthetic(epochs=2), sampler="random", seed=3, heartbeat_interval=None,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0), **common)


@pytest.fixture(scope="module")
def killed_searches(tmp_path_factory):
    """The folder holding each case's search, killed at its pruned trial's end."""
    root = tmp_path_factory.mktemp("killed")
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", _KILLED_SEARCHES, str(root)], env=env,
                            capture_output=True, text=True, timeout=600)
    killed = dict(line.split() for line in result.stdout.splitlines())
    assert killed == {case: str(int(signal.SIGKILL)) for case in CASES}, result.stderr[-3000:]
    return root


def _records(tuner):
    """What the search recorded: each trial's status, epochs, score, best epoch and
    message; the oracle's pruned trials; the Optuna study's trials."""
    oracle = tuner.oracle
    trials = {trial_id: (trial.status, [o.step for o in trial.metrics.get_history("score")],
                         trial.score, trial.best_step, trial.message)
              for trial_id, trial in oracle.trials.items()}
    study = ([(t.number, t.state, t.intermediate_values) for t in tuner.study.trials]
             if isinstance(tuner, tuning.OptunaSearch) else None)
    return trials, oracle.pruned_trials, study


@pytest.mark.parametrize("case", CASES)
def test_a_trial_killed_after_its_pruned_epoch_resumes_as_pruned(killed_searches, tmp_path,
                                                                  case, capsys):
    folder = killed_searches / case / "search" / "trial_1"
    # The kill landed after the pruned epoch's checkpoint, before the trial ended.
    assert read_checkpoint_meta(folder / "checkpoint.npz")["epoch"] == 0
    assert json.loads((folder / "trial.json").read_text())["status"] == "RUNNING"

    rerun = make_tuner(case, killed_searches / case)
    rerun.search(verbose=0)
    said = capsys.readouterr().out
    uninterrupted = make_tuner(case, tmp_path)
    uninterrupted.search(verbose=0)
    assert uninterrupted.oracle.pruned_trials["1"]["epoch"] == 0
    # Before, the rerun trained the pruned trial on (epoch 1, pruned again there).
    assert _records(rerun) == _records(uninterrupted)
    assert "Trial 1: its checkpoint says it was pruned after epoch 1; it ends as pruned" in said


def _oracle(directory):
    oracle = tuning.PruningRandomSearchOracle(
        objective=keras_tuner.Objective("score", "max"), max_trials=3, seed=0,
        pruner=tuning.MedianPruner(startup_trials=1, warmup_epochs=0))
    oracle._set_project_dir(str(directory), "p")
    oracle.verbose = 0
    return oracle


def test_a_pruning_decision_is_saved_when_made_and_forgotten_if_the_trial_goes_on(tmp_path):
    """A kill after the decision but before the epoch's checkpoint: the resumed trial
    redoes the epoch and reports the next one, so the saved decision no longer holds."""
    oracle = _oracle(tmp_path)
    hp = keras_tuner.HyperParameters()
    hp.Float("x", 0, 1)
    oracle.update_space(hp)
    first = oracle.create_trial("tuner0")
    oracle.update_trial(first.trial_id, {"score": 0.9}, step=0)
    oracle.update_trial(first.trial_id, {"score": 0.9}, step=1)
    first.status = "COMPLETED"
    oracle.end_trial(first)
    second = oracle.create_trial("tuner0")
    assert oracle.update_trial(second.trial_id, {"score": 0.1}, step=0).status == "STOPPED"
    # the decision is in oracle.json before the trial ends
    resumed = _oracle(tmp_path)
    resumed.reload()
    assert resumed.pruned_trials == {second.trial_id: oracle.pruned_trials[second.trial_id]}
    trial = resumed.create_trial("tuner0")
    assert trial.trial_id == second.trial_id and trial.status == "RUNNING"
    assert resumed.update_trial(trial.trial_id, {"score": 0.95}, step=1).status == "RUNNING"
    assert resumed.pruned_trials == {}
    trial.status = "COMPLETED"
    resumed.end_trial(trial)
    assert resumed.get_trial(trial.trial_id).message is None
