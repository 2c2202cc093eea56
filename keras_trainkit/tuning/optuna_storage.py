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
* a database URL (``"sqlite:///..."``, ``"postgresql+psycopg2://user@host/db"``,
  ``"mysql+pymysql://..."``): Optuna's ``RDBStorage``, for workers on many hosts.
  The database's Python driver must be installed. Name it in the URL: a bare
  ``"postgresql://"`` means psycopg 3 to SQLAlchemy 2.1 and psycopg2 to 2.0.
* any ``optuna.storages.BaseStorage`` object, used as it is.

:func:`check_storage` refuses, when the search is made, a ``storage`` that
cannot open: not a URL, a dialect SQLAlchemy does not know (``"postgres://"``),
a driver that is not installed, a SQLite or journal file in a folder that does
not exist. A server that cannot be reached fails at the first trial.

Every storage made from a name or URL here has a heartbeat (unless
``heartbeat_interval=None``): every running trial records one every
``heartbeat_interval`` seconds (:class:`Heartbeat`), and a trial whose heartbeat
is older than ``grace_period`` belongs to a dead worker: the next worker that
asks for a trial fails it and queues a copy with the same hyperparameters
(Optuna's ``RetryHeartbeatStaleTrialCallback``, at most ``max_retry`` times).

* Database storages (SQLite included) use Optuna's own heartbeat
  (``RDBStorage(heartbeat_interval=..., grace_period=...)``), timed by the
  database.
* Journal files: Optuna 5.1's ``JournalStorage`` has no heartbeat, so
  :class:`HeartbeatJournalStorage` adds one with Optuna's public storage API:
  the heartbeat is the time (``time.time()``) written into the trial's system
  attribute ``trainkit_heartbeat``, and a stale trial is failed through the
  journal like any state change. The journal applies its log in order and
  ignores a change to a finished trial, so when two workers fail the same
  trial only the first succeeds (the other gets ``UpdateFinishedTrialError``)
  and only it queues the copy; a worker that was only slow finds its trial
  finished and its late reports are dropped. The workers' clocks are compared,
  so hosts must keep them in step (NTP) to well within ``grace_period``. A
  worker killed while it held the journal's file lock stalls the others until
  Optuna's lock expires (30 s by default).
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings

import sqlalchemy

from keras_trainkit.tuning.optuna_required import optuna
from keras_trainkit.utils.validation import MissingPackage, check_non_negative, check_positive

DATABASE_FILE = "optuna.db"
JOURNAL_FILE = "optuna.journal"
JOURNAL_PREFIX = "journal:"
# SQLite waits this long (seconds) for another process's write lock before failing.
SQLITE_LOCK_TIMEOUT = 120
SCHEMA_ATTEMPTS = 5
HEARTBEAT_ATTR = "trainkit_heartbeat"


class HeartbeatJournalStorage(optuna.storages.JournalStorage):
    """Optuna's ``JournalStorage`` with a heartbeat of its running trials.

    A running trial's heartbeat is the last time (``time.time()``, seconds) a
    :class:`Heartbeat` wrote into its system attribute ``trainkit_heartbeat``, or
    its start before the first beat (a retried copy inherits its original's
    attributes; its own start is newer). A ``RUNNING`` trial whose heartbeat is
    older than ``grace_period`` is stale (:meth:`stale_trial_ids`);
    :func:`fail_dead_workers_trials` fails it and passes it to
    ``heartbeat_stale_trial_callback``. The method names follow ``RDBStorage``'s.

    Args:
        backend: a journal backend (``optuna.storages.journal.JournalFileBackend``).
        heartbeat_interval: seconds between a running trial's heartbeats.
        grace_period: seconds without a heartbeat after which a trial is stale.
        heartbeat_stale_trial_callback: called as ``callback(study, frozen_trial)``
            with each trial failed as stale, e.g.
            ``optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)``.

    Example:
        ```python
        storage = HeartbeatJournalStorage(
            optuna.storages.journal.JournalFileBackend("search.journal"), 10, 20,
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
        ```
    """

    def __init__(self, backend, heartbeat_interval: int, grace_period: int,
                 heartbeat_stale_trial_callback=None):
        check_positive("heartbeat_interval", heartbeat_interval, integer=True)
        check_positive("grace_period", grace_period)
        if grace_period <= heartbeat_interval:
            raise ValueError("Argument `grace_period` must be greater than heartbeat_interval "
                             f"({heartbeat_interval}). Received: grace_period={grace_period}")
        if heartbeat_stale_trial_callback is not None and not callable(
                heartbeat_stale_trial_callback):
            raise TypeError("Argument `heartbeat_stale_trial_callback` must be callable or None. "
                            f"Received: {heartbeat_stale_trial_callback!r}")
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        """Write the time into the trial's ``trainkit_heartbeat`` system attribute."""
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def stale_trial_ids(self, study_id: int) -> list[int]:
        """The ids of the study's running trials without a heartbeat for ``grace_period``."""
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False,
                                         states=(optuna.trial.TrialState.RUNNING,)):
            beats = [trial.system_attrs.get(HEARTBEAT_ATTR)]
            if trial.datetime_start is not None:  # a naive local time, as Optuna keeps it
                beats.append(trial.datetime_start.timestamp())
            beats = [b for b in beats if isinstance(b, (int, float))]
            if beats and now - max(beats) > self.grace_period:
                stale.append(self.get_trial_id_from_study_id_trial_number(study_id, trial.number))
        return stale


STORAGE_FORMS = ("None, 'journal', 'journal:<path>', a database URL ('sqlite:///<path>', "
                 "'postgresql+psycopg2://<user>@<host>/<database>', ...) or an "
                 "optuna.storages storage")
# The pip package of each database driver whose module has another name.
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary",
                   "MySQLdb": "mysqlclient"}


def shown_storage(storage: str) -> str:
    """``storage`` for a message: a database URL's password as ``***``."""
    try:
        return sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return storage


def _refuse_storage(storage, problem: str) -> ValueError:
    return ValueError(f"Argument `storage` must be {STORAGE_FORMS}; {problem}. "
                      f"Received: storage={shown_storage(storage)!r}")


def storage_file(storage: str) -> str | None:
    """The file a ``storage`` string names: a ``"journal:<path>"``'s path, a SQLite URL's
    database file; ``None`` for a database server, an in-memory SQLite database, and
    ``"journal"`` (the search directory's journal, which only the search knows).

    Raises:
        ValueError: a string that is neither a journal nor a database URL.
    """
    if storage == "journal" or storage.startswith(JOURNAL_PREFIX):
        return storage[len(JOURNAL_PREFIX):] or None
    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        raise _refuse_storage(storage, "it is not one of them") from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return url.database
    return None


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def _check_file(storage: str) -> None:
    """A SQLite or journal file must sit in an existing folder and, where it exists, be a
    file of its kind (an empty file is a new one): a folder or another file failed inside
    Optuna or SQLAlchemy, with a traceback that named neither the argument nor the file."""
    path = storage_file(storage)
    if path is None:
        return
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise _refuse_storage(storage, f"{folder} is a file, not a folder")
    if not os.path.isdir(folder):
        raise _refuse_storage(storage, f"its file's folder {folder} does not exist (create it)")
    if os.path.isdir(path):
        raise _refuse_storage(storage, f"{path} is a folder, not a file")
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb") as handle:
        start = handle.readline(1 << 16)
    journal = storage.startswith(JOURNAL_PREFIX)
    if journal and not _is_json_object(start):
        raise _refuse_storage(storage, f"{path} is not an Optuna journal (its first line is "
                                       "not a JSON record)")
    if not journal and not start.startswith(SQLITE_HEADER):
        raise _refuse_storage(storage, f"{path} is not a SQLite database")


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False


def _check_database_url(storage: str) -> None:
    """The URL parses, names a dialect SQLAlchemy has, and its driver imports.
    ``create_engine`` loads the dialect and imports the driver; it connects only
    when first used, so nothing is opened here."""
    try:
        engine = sqlalchemy.create_engine(storage)
    except sqlalchemy.exc.NoSuchModuleError:  # a subclass of ArgumentError
        dialect = storage.split(":", 1)[0]
        hint = " (PostgreSQL's is 'postgresql')" if dialect.split("+")[0] == "postgres" else ""
        raise _refuse_storage(storage, f"SQLAlchemy has no database dialect {dialect!r}{hint}"
                              ) from None
    except sqlalchemy.exc.ArgumentError:
        raise _refuse_storage(storage, "it is not one of them") from None
    except ImportError as error:
        module = getattr(error, "name", None) or str(error)
        raise MissingPackage(
            f"Argument `storage` needs the database driver {module!r}, which is not installed. "
            f"Install it (pip install {DRIVER_PACKAGES.get(module, module)!r}), or name an "
            "installed driver in the URL (e.g. 'postgresql+psycopg2://...', "
            "'postgresql+psycopg://...', 'mysql+pymysql://...'). "
            f"Received: storage={shown_storage(storage)!r}") from error
    engine.dispose()
    _check_file(storage)


def check_storage(storage) -> None:
    """Refuse a ``storage`` argument that cannot open, before any work starts.

    Raises:
        TypeError: for anything but ``None``, a string or an Optuna storage.
        ValueError: for a string that is no database URL, a dialect SQLAlchemy
            does not know, or a SQLite or journal file in a missing folder.
        MissingPackage: an ``ImportError`` for a database whose driver is not
            installed, naming it and how to install it.
    """
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return
    if not isinstance(storage, str):
        raise TypeError(f"Argument `storage` must be {STORAGE_FORMS}. "
                        f"Received: storage={storage!r}")
    if storage == "journal" or storage.startswith(JOURNAL_PREFIX):
        _check_file(storage)
        return
    _check_database_url(storage)


def check_heartbeat(heartbeat_interval, grace_period, max_retry) -> int | None:
    """Check the heartbeat's arguments; return the grace period (default twice the
    interval; ``None`` without a heartbeat).

    Raises:
        TypeError, ValueError: an interval or grace period that is not a positive
            integer, a grace period not longer than the interval (a live worker's
            trial would be failed) or without a heartbeat (it would be ignored), a
            ``max_retry`` that is not ``None`` or >= 0.
    """
    if max_retry is not None:
        check_non_negative("max_retry", max_retry, integer=True)
    if grace_period is not None:
        check_positive("grace_period", grace_period, integer=True)
    if heartbeat_interval is None:
        if grace_period is not None:
            raise ValueError(
                "Argument `grace_period` needs a heartbeat: heartbeat_interval=None turns it "
                "off, so no trial would ever be failed for a missing one. Give a "
                f"heartbeat_interval, or leave grace_period out. Received: grace_period={grace_period}")
        return None
    check_positive("heartbeat_interval", heartbeat_interval, integer=True)
    if grace_period is None:
        return 2 * heartbeat_interval
    if grace_period <= heartbeat_interval:
        raise ValueError("Argument `grace_period` must be greater than heartbeat_interval "
                         f"({heartbeat_interval}), or a live worker's trial is failed. "
                         f"Received: grace_period={grace_period}")
    return grace_period


def make_storage(storage, project_dir: str, heartbeat_interval: int | None,
                 grace_period: int | None, max_retry: int | None):
    """The Optuna storage for ``storage`` (see the module docstring).

    Raises:
        TypeError, ValueError, MissingPackage: as :func:`check_storage`.
    """
    check_storage(storage)
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if storage is None:
        storage = "sqlite:///" + os.path.abspath(os.path.join(project_dir, DATABASE_FILE))
    callback = None
    if heartbeat_interval is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    if storage == "journal" or storage.startswith(JOURNAL_PREFIX):
        path = storage_file(storage) or os.path.join(project_dir, JOURNAL_FILE)
        backend = optuna.storages.journal.JournalFileBackend(path)
        if heartbeat_interval is None:
            return optuna.storages.JournalStorage(backend)
        return HeartbeatJournalStorage(backend, heartbeat_interval, grace_period, callback)
    engine_kwargs = ({"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT}}
                     if storage.startswith("sqlite") else None)
    attempt = 1
    while True:
        try:
            with warnings.catch_warnings():  # the heartbeat is the search's default, not the user's pick
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
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
    if isinstance(storage, HeartbeatJournalStorage):
        return True
    return (isinstance(storage, optuna.storages.RDBStorage)
            and storage.get_heartbeat_interval() is not None)


def fail_dead_workers_trials(study, storage) -> list[int]:
    """Fail the trials of workers whose heartbeat stopped (each is passed to the storage's
    stale-trial callback, which queues a copy); ``storage`` is the study's. Returns the
    numbers of the trials this call failed (Optuna's ``fail_stale_trials`` on a database
    does not say: an empty list there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if not isinstance(storage, HeartbeatJournalStorage):
            optuna.storages.fail_stale_trials(study)
            return []
        failed = []
        study_id = storage.get_study_id_from_name(study.study_name)
        for trial_id in storage.stale_trial_ids(study_id):
            try:
                if not storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # finished meanwhile, or another worker failed it first
            trial = storage.get_trial(trial_id)
            failed.append(trial.number)
            callback = storage.get_heartbeat_stale_trial_callback()
            if callback is not None:
                callback(study, trial)
        return failed


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
            except optuna.exceptions.UpdateFinishedTrialError:
                return  # another worker failed it (a journal): its copy runs elsewhere
            except Exception as error:  # a locked database: the next beat retries
                warnings.warn(f"Optuna heartbeat of trial {self.trial_id} failed: {error}",
                              RuntimeWarning, stacklevel=1)
            if self.stopped.wait(interval):
                return

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


def check_study_holds(storage, study_name: str, trials: dict, project_dir: str, argument) -> None:
    """Refuse a ``storage`` whose study ``study_name`` lacks trials the search in
    ``project_dir`` recorded (``trials``: KerasTuner's records by id, reloaded from
    ``oracle.json`` and the trial files), before a study is made there. A search resumed
    with another storage (``storage`` changed or left out, a journal file moved) found an
    empty study, handed out the trial numbers 0, 1, ... again and trained its completed
    trials anew, over their records and checkpoints. ``argument``: the ``storage`` given."""
    recorded = sorted(int(trial_id) for trial_id in trials if trial_id.isdigit())
    if not recorded:
        return
    try:
        study_id = storage.get_study_id_from_name(study_name)
        known = {trial.number for trial in storage.get_all_trials(study_id, deepcopy=False)}
    except KeyError:  # no such study
        known = set()
    missing = [number for number in recorded if number not in known]
    if not missing:
        return
    shown = shown_storage(argument) if isinstance(argument, str) else (
        "None (the SQLite file in the search folder)" if argument is None else type(argument).__name__)
    raise ValueError(
        f"Argument `storage` must be the storage this search ran on: the search in {project_dir} "
        f"recorded {len(recorded)} trial(s), and the study {study_name!r} in this storage "
        f"lacks {len(missing)} of them (numbers {', '.join(map(str, missing[:5]))}"
        f"{', ...' if len(missing) > 5 else ''}). Give the storage it ran on, or start anew with "
        f"overwrite=True or another project_name (trainkit tune: --storage; --overwrite or "
        f"another --output). Received: storage={shown}")


__all__ = ["DATABASE_FILE", "HEARTBEAT_ATTR", "Heartbeat", "HeartbeatJournalStorage",
           "JOURNAL_FILE", "check_heartbeat", "check_storage", "check_study_holds",
           "fail_dead_workers_trials", "has_heartbeat", "make_storage", "shown_storage",
           "storage_file", "storage_trial_id", "storage_url"]

