"""The heartbeat we add to Optuna's journal storage (``HeartbeatJournalStorage``), in one
process: two storage objects on one journal file stand for two workers. The test with
real processes and SIGKILL is in ``test_optuna_workers.py``."""

import time

import pytest

optuna = pytest.importorskip("optuna")

from keras_trainkit.tuning.optuna_storage import (  # noqa: E402
    HEARTBEAT_ATTR,
    Heartbeat,
    HeartbeatJournalStorage,
    fail_dead_workers_trials,
    has_heartbeat,
    check_storage,
    make_storage,
    shown_storage,
    storage_file,
    storage_trial_id,
)

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
TrialState = optuna.trial.TrialState
GRACE = 1.5


def _worker(path, grace=GRACE, max_retry=3):
    """One worker's storage and study on the journal file ``path``."""
    storage = HeartbeatJournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path)), 1, grace,
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry))
    study = optuna.create_study(storage=storage, study_name="s", load_if_exists=True)
    return storage, study


def _run(study, x):
    """A trial with the value ``x`` asked and left RUNNING."""
    study.enqueue_trial({"x": x})
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    return trial


def test_make_storage_gives_a_journal_with_a_heartbeat_unless_turned_off(tmp_path):
    storage = make_storage("journal", str(tmp_path), 10, 20, 3)
    assert isinstance(storage, HeartbeatJournalStorage) and has_heartbeat(storage)
    assert storage.get_heartbeat_interval() == 10 and storage.grace_period == 20
    assert isinstance(storage.get_heartbeat_stale_trial_callback(),
                      optuna.storages.RetryHeartbeatStaleTrialCallback)
    plain = make_storage(f"journal:{tmp_path}/other.journal", str(tmp_path), None, None, 3)
    assert type(plain) is optuna.storages.JournalStorage and not has_heartbeat(plain)


def test_the_default_heartbeat_warns_of_no_experimental_feature(tmp_path):
    """The heartbeat is the search's default, not the user's choice: Optuna's
    ExperimentalWarning for heartbeat_interval reached every trainkit tune --tuner optuna."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_storage(None, str(tmp_path), 10, 20, 3)
        make_storage("journal", str(tmp_path), 10, 20, 3)
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]


def test_a_stale_trial_is_failed_once_and_its_values_queued_again(tmp_path, monkeypatch):
    path = tmp_path / "j.journal"
    storage_a, study_a = _worker(path)
    storage_b, study_b = _worker(path)
    dead = _run(study_a, 0.25)  # worker A's trial; A beats once, then dies
    storage_a.record_heartbeat(storage_trial_id(study_a, storage_a, dead.number))
    alive = _run(study_b, 0.75)
    study_id = storage_b.get_study_id_from_name("s")
    assert storage_b.stale_trial_ids(study_id) == []  # both beat within the grace period
    beat = Heartbeat(storage_b, storage_trial_id(study_b, storage_b, alive.number))
    try:
        time.sleep(GRACE + 0.3)
        # B and a third worker C look for stale trials at once: only one fails it
        storage_c, study_c = _worker(path)
        seen_by_c = storage_c.stale_trial_ids(study_id)  # C reads before B writes
        assert seen_by_c == [storage_trial_id(study_a, storage_a, dead.number)]
        assert fail_dead_workers_trials(study_b, storage_b) == [dead.number]
        monkeypatch.setattr(storage_c, "stale_trial_ids", lambda study_id: seen_by_c)
        assert fail_dead_workers_trials(study_c, storage_c) == []  # refused: B was first
        monkeypatch.undo()
    finally:
        beat.stop()
    trials = study_c.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    copy = trials[2]
    assert copy.params == {"x": 0.25}
    assert copy.system_attrs["failed_trial"] == dead.number
    assert copy.system_attrs["retry_history"] == [dead.number]
    # the copy inherits its original's old stamp; once asked, its own start counts
    retry = study_c.ask()
    assert retry.number == copy.number and retry.params == {"x": 0.25}
    assert storage_c.stale_trial_ids(study_id) == []


def test_a_late_report_of_a_failed_trial_is_refused_and_its_heartbeat_stops(tmp_path):
    path = tmp_path / "j.journal"
    storage_a, study_a = _worker(path)
    storage_b, study_b = _worker(path)
    slow = _run(study_a, 0.5)
    trial_id = storage_trial_id(study_a, storage_a, slow.number)
    time.sleep(GRACE + 0.3)  # A stalled past the grace period: B fails its trial
    assert fail_dead_workers_trials(study_b, storage_b) == [slow.number]
    beat = Heartbeat(storage_a, trial_id)  # A's next beat finds the trial finished
    beat.thread.join(timeout=5)
    assert not beat.thread.is_alive()
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        slow.report(0.9, 1)
    study_a.tell(slow, 0.9, skip_if_finished=True)  # what the oracle does: no error
    assert study_b.trials[slow.number].state == TrialState.FAIL
    assert HEARTBEAT_ATTR not in study_b.trials[slow.number].system_attrs


def test_retries_stop_at_max_retry(tmp_path):
    path = tmp_path / "j.journal"
    storage, study = _worker(path, max_retry=1)
    _run(study, 0.5)
    time.sleep(GRACE + 0.3)
    fail_dead_workers_trials(study, storage)
    study.ask()  # the retry, which dies too
    time.sleep(GRACE + 0.3)
    fail_dead_workers_trials(study, storage)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.FAIL]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"heartbeat_interval": 0}, ValueError, "heartbeat_interval"),
    ({"grace_period": 2}, ValueError, "`grace_period` must be greater"),
    ({"heartbeat_stale_trial_callback": 3}, TypeError, "must be callable"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, error, match):
    arguments = {"heartbeat_interval": 2, "grace_period": 4,
                 "heartbeat_stale_trial_callback": None, **kwargs}
    with pytest.raises(error, match=match):
        HeartbeatJournalStorage(optuna.storages.journal.JournalFileBackend(
            str(tmp_path / "j.journal")), **arguments)


def test_the_oracle_refuses_a_grace_period_within_the_interval():
    from keras_trainkit import tuning

    with pytest.raises(ValueError, match="grace_period.*Received: grace_period=5"):
        tuning.OptunaOracle(objective="val_accuracy", heartbeat_interval=5, grace_period=5)


@pytest.mark.parametrize("storage, expected", [
    ("journal", None), ("journal:", None), ("journal:/data/s.journal", "/data/s.journal"),
    ("sqlite:///rel/s.db", "rel/s.db"), ("sqlite:////data/s.db?timeout=30", "/data/s.db"),
    ("sqlite://", None), ("sqlite:///:memory:", None),
    ("postgresql+psycopg2://user:secret@host/db", None)])
def test_storage_file_names_the_file_of_a_journal_or_sqlite_storage(storage, expected):
    assert storage_file(storage) == expected


def test_a_sqlite_url_with_a_query_is_checked_at_its_file_and_a_password_is_hidden(tmp_path):
    check_storage(f"sqlite:///{tmp_path}/s.db?timeout=30")  # the folder exists
    with pytest.raises(ValueError, match="does not exist"):
        check_storage(f"sqlite:///{tmp_path}/missing/s.db?timeout=30")
    with pytest.raises(ValueError, match="storage='not a url'"):
        storage_file("not a url")
    assert shown_storage("postgresql+psycopg2://user:secret@host/db") == (
        "postgresql+psycopg2://user:***@host/db")
