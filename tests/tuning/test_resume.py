"""SIGKILL a running search and rerun it: nothing lost, nothing run twice, the
interrupted trial continues from its last epoch checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
