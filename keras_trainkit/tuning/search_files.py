"""Check a saved search's files before KerasTuner reloads them.

KerasTuner reloads a search from ``oracle.json``, every ``trial_<id>/trial.json``
and ``<tuner_id>.json``; one truncated or garbage file makes it fail with a raw
traceback, and a truncated best-weights file fails only later, in
``load_model``. :func:`repair_search_files` runs first and:

* refuses, with a message naming the file, an ``oracle.json`` it cannot read
  (the oracle's bookkeeping cannot be rebuilt from the trials);
* re-queues a trial whose ``trial.json`` is damaged or missing, when its
  hyperparameters are known from its checkpoint (``checkpoint.npz``, or an
  older ``resume.json``, records them): the damaged files are moved into ``trial_<id>/damaged_<time>/``, a
  fresh record is written and the trial runs again with the same
  hyperparameters; without them it refuses, naming the file;
* re-queues a completed trial whose best-epoch weights are unreadable;
* re-queues a trial recorded in ``trial.json`` but not yet in ``oracle.json``
  (a kill between the two writes, or another worker of an Optuna search
  starting it now: the ``OptunaOracle`` then leaves it to that worker);
* leaves alone an empty trial folder (or one holding only the temporary file
  of its ``trial.json``) that ``oracle.json`` does not list: a trial being
  created, by another worker of the search or by a process stopped between
  making the folder and writing the record. It has not run, so nothing is lost
  (a stopped process's trial id is handed out again);
* sets a damaged tuner state file aside (KerasTuner's tuners keep no state in
  it) and writes the tuner's fresh state.

It returns one line per repair, for the search to print.
"""

from __future__ import annotations

import json
import os
import re

import keras_tuner
from keras_tuner.engine.trial import Trial, TrialStatus

from keras_trainkit.tuning.epoch_checkpoint import (
    DamagedCheckpoint,
    check_weights_file,
    read_resume_state,
    set_aside,
)
from keras_trainkit.utils.files import write_json_atomically

ORACLE_FILE = "oracle.json"
TRIAL_FILE = "trial.json"
_ORACLE_KEYS = {"ongoing_trials": dict, "start_order": list, "end_order": list,
                "retry_queue": list, "run_times": dict, "hyperparameters": dict}
_TRIAL_FOLDER = re.compile(r"^trial_(.+)$")


def _refuse(project_dir: str, path: str, problem: str) -> RuntimeError:
    return RuntimeError(
        f"The search in {project_dir} cannot resume: {path} {problem}. Restore the file, or "
        "start afresh with overwrite=True (`trainkit tune --overwrite`).")


def _read_json(path: str):
    with open(path, "rb") as handle:
        return json.loads(handle.read())


def _read_oracle_state(project_dir: str) -> dict:
    path = os.path.join(project_dir, ORACLE_FILE)
    try:
        state = _read_json(path)
    except FileNotFoundError:
        raise _refuse(project_dir, path, "is missing") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise _refuse(project_dir, path, f"is damaged ({error})") from None
    if not isinstance(state, dict):
        raise _refuse(project_dir, path, "is damaged (not a JSON object)")
    for key, kind in _ORACLE_KEYS.items():
        if not isinstance(state.get(key), kind):
            raise _refuse(project_dir, path, f"is damaged (its {key!r} is {state.get(key)!r})")
    return state


def _trial_problem(folder: str, best_weights_name: str):
    """``(record, problem, damaged file names)`` of one trial folder."""
    path = os.path.join(folder, TRIAL_FILE)
    try:
        record = Trial.from_state(_read_json(path))
    except FileNotFoundError:
        return None, "its trial.json is missing", []
    except Exception as error:  # ValueError, KeyError, TypeError from a damaged record
        return None, f"its trial.json is damaged ({type(error).__name__}: {error})", [TRIAL_FILE]
    weights = os.path.join(folder, best_weights_name)
    if record.status == TrialStatus.COMPLETED and os.path.exists(weights):
        try:
            check_weights_file(weights)
        except DamagedCheckpoint as damage:
            return record, f"its best-epoch weights are damaged ({damage.reason})", [
                best_weights_name]
    return record, None, []


def _being_created(folder: str) -> bool:
    """Whether a trial folder without a readable record holds nothing but, at most,
    that record being written or just written (the oracle makes the folder, then
    writes ``trial.json`` with ``write_atomically``; another worker may rename it
    into place after this process looked for it)."""
    return all(name == TRIAL_FILE or name.startswith(f"{TRIAL_FILE}.tmp-")
               for name in os.listdir(folder))


def _known_hyperparameters(folder: str, record):
    if record is not None:
        return record.hyperparameters
    try:
        state = read_resume_state(folder)
    except DamagedCheckpoint:
        return None
    if state is None:
        return None
    return keras_tuner.HyperParameters.from_config(state.hyperparameters)


def _requeue(state: dict, trial_id: str) -> None:
    if trial_id not in state["start_order"]:
        state["start_order"].append(trial_id)
    state["end_order"] = [t for t in state["end_order"] if t != trial_id]
    state["ongoing_trials"] = {k: v for k, v in state["ongoing_trials"].items() if v != trial_id}
    if trial_id not in state["retry_queue"]:
        state["retry_queue"].append(trial_id)


def _trial_folders(project_dir: str, state: dict) -> dict[str, str]:
    folders = {}
    for name in os.listdir(project_dir):
        match = _TRIAL_FOLDER.match(name)
        if match and os.path.isdir(os.path.join(project_dir, name)):
            folders[match.group(1)] = os.path.join(project_dir, name)
    for trial_id in state["start_order"]:
        folders.setdefault(str(trial_id), os.path.join(project_dir, f"trial_{trial_id}"))
    return folders


def _repair_trials(project_dir: str, state: dict, best_weights_name: str) -> list[str]:
    notes = []
    for trial_id, folder in sorted(_trial_folders(project_dir, state).items()):
        record, problem, damaged = _trial_problem(folder, best_weights_name)
        if problem is None:
            if record.status == TrialStatus.RUNNING and trial_id not in state["start_order"]:
                _requeue(state, trial_id)
                notes.append(f"Trial {trial_id} was started but is not in {ORACLE_FILE}: it "
                             "runs again, unless another worker of the search is running it.")
            continue
        if record is None and not os.path.isdir(folder):
            raise _refuse(project_dir, folder, "is missing although the oracle lists the trial")
        if not damaged and trial_id not in state["start_order"] and _being_created(folder):
            continue
        hyperparameters = _known_hyperparameters(folder, record)
        if hyperparameters is None:
            raise _refuse(project_dir, os.path.join(folder, TRIAL_FILE),
                          f"cannot be used ({problem}) and the trial's hyperparameters are "
                          "not recorded elsewhere")
        where = set_aside(folder, damaged) if damaged else None
        fresh = Trial(hyperparameters, trial_id=trial_id, status=TrialStatus.RUNNING)
        write_json_atomically(os.path.join(folder, TRIAL_FILE), fresh.get_state())
        _requeue(state, trial_id)
        notes.append(f"Trial {trial_id}: {problem}" + (f"; set aside in {where}" if where else "")
                     + "; it runs again with the same hyperparameters.")
    return notes


def _repair_tuner_state(project_dir: str, tuner_state_path: str, fresh_state: dict) -> list[str]:
    if not os.path.exists(tuner_state_path):
        return []
    try:
        _read_json(tuner_state_path)
        return []
    except (ValueError, UnicodeDecodeError) as error:
        reason = str(error)
    where = set_aside(project_dir, [os.path.basename(tuner_state_path)])
    write_json_atomically(tuner_state_path, fresh_state)
    return [f"{tuner_state_path} was damaged ({reason}); set aside in {where}, and the tuner "
            "starts from a fresh state (KerasTuner's tuners keep none)."]


def repair_search_files(project_dir: str, *, tuner_state_path: str, best_weights_name: str,
                        fresh_tuner_state: dict) -> list[str]:
    """Check and repair the files of the search saved in ``project_dir``.

    Args:
        project_dir: ``<directory>/<project_name>``.
        tuner_state_path: the tuner's state file (``<project>/tuner0.json``).
        best_weights_name: the name of a trial's best-weights file.
        fresh_tuner_state: what to write in place of a damaged tuner state.

    Returns:
        One message per repair.

    Raises:
        RuntimeError: naming the file, when the search cannot resume.
    """
    state = _read_oracle_state(project_dir)
    before = json.dumps(state, sort_keys=True)
    notes = _repair_trials(project_dir, state, best_weights_name)
    if json.dumps(state, sort_keys=True) != before:
        write_json_atomically(os.path.join(project_dir, ORACLE_FILE), state)
    return notes + _repair_tuner_state(project_dir, tuner_state_path, fresh_tuner_state)


__all__ = ["repair_search_files"]
