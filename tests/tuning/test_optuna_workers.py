"""Real processes on one Optuna storage: a search resumes after SIGKILL, several
workers started with the same command run one search (none repeated, none lost, a
killed worker's trial failed by its heartbeat and run again, on SQLite and on a
journal file), and two on PostgreSQL. Each worker is ``tests/tuning/_optuna_helpers.py`` (4 epochs of
0.5 s per trial)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras_tuner
import pytest

optuna = pytest.importorskip("optuna")

from keras_trainkit import tuning  # noqa: E402
from tests.tuning._optuna_helpers import Synthetic  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]
HELPER = Path(__file__).with_name("_optuna_helpers.py")
ROOT = Path(__file__).resolve().parents[2]
TrialState = optuna.trial.TrialState


def _start(directory, log, storage="default", max_trials=3, seed=7, workers=None, go=None):
    """One worker process; with ``workers``, it starts searching once that many are
    ready (every worker of a short search gets a trial however slowly it imports), and
    with ``go`` too, once that file exists."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               TF_CPP_MIN_LOG_LEVEL="2")
    together = [] if workers is None else [str(workers), *([str(go)] if go else [])]
    return subprocess.Popen(
        [sys.executable, str(HELPER), str(directory), str(log), storage, str(max_trials),
         str(seed), *together], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def _lines(log):
    if not os.path.exists(log):
        return []
    with open(log) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _wait_for(condition, timeout=300, process=None):
    """Waits until ``condition()``; fails at once, with its output, if ``process`` ends."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the worker ended (exit {process.returncode}) first:\n"
                                 + process.stdout.read()[-3000:])
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s")


def _start_workers(directory, log, storage, count, max_trials=6):
    """``count`` workers of one search. Each builds its tuner (reads the search folder)
    before the first asks for a trial; the others start searching once the first has
    started its trial. Otherwise, on a loaded machine, they could take every trial of
    the short search before the first asked for one; or, reading the folder after its
    trial began, take that trial over as their own rerun once its worker is killed
    (resumed from its checkpoint on the same host) instead of the heartbeat's retry."""
    go = Path(directory) / "go"
    first = _start(directory, log, storage=storage, max_trials=max_trials, workers=count)
    others = [_start(directory, log, storage=storage, max_trials=max_trials, workers=count,
                     go=go) for _ in range(count - 1)]
    _wait_for(lambda: any(s["pid"] == first.pid for s in _lines(log)), process=first)
    go.touch()
    return [first, *others]


def _finish(process, timeout=180):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


def _study(directory, storage=None):
    return optuna.load_study(study_name="search", storage=storage or
                             f"sqlite:///{directory}/search/optuna.db")


def test_a_search_killed_mid_trial_resumes_from_its_storage(tmp_path):
    log = tmp_path / "log.jsonl"
    first = _start(tmp_path, log)
    # the second trial has started and checkpointed its first of 4 epochs
    _wait_for(lambda: len(_lines(log)) >= 2 and
              (tmp_path / "search" / "trial_1" / "checkpoint.npz").exists(), process=first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = _lines(log)[-1]["values"]
    _finish(_start(tmp_path, log))
    study = _study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3  # none failed or lost
    starts = _lines(log)
    resumed = starts[2]  # the rerun's first start: the killed trial, from its checkpoint
    assert resumed["values"] == killed and resumed["initial_epoch"] > 0
    assert [json.dumps(s["values"], sort_keys=True) for s in starts].count(
        json.dumps(killed, sort_keys=True)) == 2
    assert len(starts) == 4


def _check_one_search(study, max_trials, victim_pid=None):
    trials = study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == max_trials
    # none repeated: every completed trial has its own values
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == max_trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if victim_pid is None:
        assert not failed
        return complete
    # the killed worker's trial failed by heartbeat and its values ran again under a new number
    assert len(failed) == 1 and failed[0].user_attrs["trainkit_worker"]["pid"] == victim_pid
    retry = [t for t in complete if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].params == failed[0].params
    return complete


@pytest.mark.parametrize("backend", ["sqlite", "journal"])
def test_three_workers_run_one_search_and_a_killed_workers_trial_is_retried(tmp_path, backend):
    """On SQLite Optuna's heartbeat fails the killed worker's trial; on a journal file
    (no heartbeat in Optuna 5.1) ours does (``HeartbeatJournalStorage``)."""
    log = tmp_path / "log.jsonl"
    journal = tmp_path / "shared.journal"
    storage = f"journal:{journal}" if backend == "journal" else "default"
    workers = _start_workers(tmp_path, log, storage, 3)
    victim = workers[0]
    time.sleep(0.8)  # the victim is in a trial's epochs
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for worker in workers[1:]:
        _finish(worker)
    if backend == "journal":
        study = optuna.load_study(study_name="search", storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))))
    else:
        study = _study(tmp_path)
    complete = _check_one_search(study, 6, victim_pid=victim.pid)
    assert {s["pid"] for s in _lines(log)} == {w.pid for w in workers}  # all three worked
    # a tuner on the same folder sees every worker's trials (best models, report)
    tuner = tuning.OptunaSearch(Synthetic(), objective=keras_tuner.Objective("score", "max"),
                                max_trials=6, storage=None if backend == "sqlite" else storage,
                                directory=str(tmp_path), project_name="search")
    best = tuner.oracle.get_best_trials(6)
    assert sorted(t.trial_id for t in best) == sorted(
        tuner.oracle.trial_id_of(t.number) for t in complete)
    assert best[0].score == pytest.approx(study.best_value)


def _postgres_driver():
    """The SQLAlchemy dialect of an installed PostgreSQL driver, or ``None``."""
    for module, dialect in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")):
        try:
            __import__(module)
            return dialect
        except ImportError:
            continue
    return None


@pytest.fixture
def postgres():
    """A PostgreSQL server started for the test (as the ``postgres`` user when run as root,
    since initdb refuses root), on a Unix socket only; its URL."""
    missing = [t for t in ("initdb", "pg_ctl") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"no PostgreSQL server can be started here ({', '.join(missing)} not on "
                    "PATH; pip cannot install a server: install it with the system's packages)")
    dialect = _postgres_driver()
    if dialect is None:
        pytest.skip("no PostgreSQL driver for SQLAlchemy: pip install psycopg2-binary")
    root = Path(tempfile.mkdtemp(prefix="trainkit-pg-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    prefix = []
    if os.geteuid() == 0:
        prefix = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o777)
        shutil.chown(socket_dir, "postgres")
    port = 54000 + os.getpid() % 1000
    subprocess.run([*prefix, "initdb", "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*prefix, "pg_ctl", "-D", str(data), "-w", "-l", str(root / "server.log"),
                    "-o", f"-p {port} -k {socket_dir} -c listen_addresses=''", "start"],
                   check=True, capture_output=True)
    try:
        yield f"{dialect}://postgres@/postgres?host={socket_dir}&port={port}"
    finally:
        subprocess.run([*prefix, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_on_a_postgresql_server(tmp_path, postgres):
    log = tmp_path / "log.jsonl"
    workers = _start_workers(tmp_path, log, postgres, 2)
    for worker in workers:
        _finish(worker)
    _check_one_search(_study(tmp_path, postgres), 6)
    assert len({s["pid"] for s in _lines(log)}) == 2
