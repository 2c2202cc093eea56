"""Where an Optuna-backed search keeps its study, and the heartbeat of its trials.

``storage`` (the argument of :class:`~keras_trainkit.tuning.OptunaSearch`):

* ``None`` (the default): a SQLite file, ``<directory>/<project_name>/optuna.db``.
  A rerun of the script continues the study; several processes on one host
  (or on hosts sharing the directory over a file system with working locks)
  can run one search on it.
* ``"journal"``: Optuna's journal file, ``<directory>/<project_name>/optuna.journal``
  (an append-only log with file locks; suits network file systems where
  SQLite's locking does not work).
* ``"journal:/path/to/file"``: a journal file elsewhere.
* a database URL (``"sqlite:///..."``, ``"postgresql://user@host/db"``,
  ``"mysql://..."``): Optuna's ``RDBStorage``, for workers on many hosts.
* any ``optuna.storages.BaseStorage`` object, used as it is.

Database storages (SQLite included) are made with a heartbeat: every running
trial records one every ``heartbeat_interval`` seconds (:class:`Heartbeat`),
and a trial whose heartbeat is older than ``grace_period`` belongs to a dead
worker: the next worker that asks for a trial fails it and queues a copy
with the same hyperparameters (Optuna's ``RetryHeartbeatStaleTrialCallback``).
Optuna's journal storage has no heartbeat (Optuna 5.1): a killed worker's
trial stays ``RUNNING`` there.
"""

from __future__ import annotations

import os
import threading
import time
import warnings

import sqlalchemy

from keras_trainkit.tuning.optuna_required import optuna

DATABASE_FILE = "optuna.db"
JOURNAL_FILE = "optuna.journal"
JOURNAL_PREFIX = "journal:"
# SQLite waits this long (seconds) for another process's write lock before failing.
SQLITE_LOCK_TIMEOUT = 120
SCHEMA_ATTEMPTS = 5


def make_storage(storage, project_dir: str, heartbeat_interval: int | None,
                 grace_period: int | None, max_retry: int | None):
    """The Optuna storage for ``storage`` (see the module docstring).

    Raises:
        TypeError: for anything but ``None``, a string or an Optuna storage.
    """
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if storage is None:
        storage = "sqlite:///" + os.path.abspath(os.path.join(project_dir, DATABASE_FILE))
    if not isinstance(storage, str):
        raise TypeError("Argument `storage` must be None, 'journal', 'journal:<path>', a "
                        "database URL or an optuna.storages storage. "
                        f"Received: storage={storage!r}")
    if storage == "journal" or storage.startswith(JOURNAL_PREFIX):
        path = storage[len(JOURNAL_PREFIX):] or os.path.join(project_dir, JOURNAL_FILE)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    engine_kwargs = ({"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT}}
                     if storage.startswith("sqlite") else None)
    callback = None
    if heartbeat_interval is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    attempt = 1
    while True:
        try:
            return optuna.storages.RDBStorage(
                storage, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                grace_period=grace_period, heartbeat_stale_trial_callback=callback)
        except sqlalchemy.exc.DBAPIError:
            # Workers started together race to create a new database's tables (and
            # Alembic's version row): the losers find them made on the next try.
            if attempt == SCHEMA_ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)
            attempt += 1


def storage_url(storage) -> str | None:
    """A URL for ``optuna-dashboard`` and ``optuna.load_study`` (``None`` if unknown)."""
    if isinstance(storage, optuna.storages.RDBStorage):
        return storage.url
    return None


def has_heartbeat(storage) -> bool:
    """Whether ``storage`` records heartbeats (and so fails a dead worker's trials)."""
    return (isinstance(storage, optuna.storages.RDBStorage)
            and storage.get_heartbeat_interval() is not None)


def fail_dead_workers_trials(study) -> None:
    """Fail the trials of workers whose heartbeat stopped (they are queued again)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def storage_trial_id(study, storage, number: int) -> int:
    """The storage's id of the study's trial ``number`` (what ``optuna.Trial`` takes)."""
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


class Heartbeat:
    """Records a running trial's heartbeat every ``interval`` seconds in a daemon thread
    (what ``Study.optimize`` does for its trials; an ask-and-tell loop must do it itself).

    Args:
        storage: an Optuna storage with a heartbeat.
        trial_id: the storage's id of the trial.
    """

    def __init__(self, storage, trial_id: int):
        self.storage = storage
        self.trial_id = trial_id
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True,
                                       name=f"optuna-heartbeat-{trial_id}")
        self.thread.start()

    def _beat(self):
        interval = self.storage.get_heartbeat_interval()
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as error:  # a locked database: the next beat retries
                warnings.warn(f"Optuna heartbeat of trial {self.trial_id} failed: {error}",
                              RuntimeWarning, stacklevel=1)
            if self.stopped.wait(interval):
                return

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


__all__ = ["DATABASE_FILE", "Heartbeat", "JOURNAL_FILE", "fail_dead_workers_trials",
           "has_heartbeat", "make_storage", "storage_trial_id", "storage_url"]
