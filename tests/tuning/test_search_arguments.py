"""A search's arguments that KerasTuner takes as they come and fails on at a later trial
(or never) are checked when the tuner is made, before its folder exists: `seed`,
`max_trials`, `max_consecutive_failed_trials`, `max_retries_per_trial`,
`executions_per_trial`, `progress`, a list `objective`, and OptunaSearch's `storage`,
heartbeat and study name.
A database driver that is not installed is named, with the command that installs it,
in the library and as one line from `trainkit tune`. No training: fast."""

import importlib.util
import re

import keras
import keras_tuner
import pytest

from keras_trainkit import cli, tuning
from keras_trainkit.utils.validation import MissingPackage

SCORE = keras_tuner.Objective("val_loss", "min")


def build(hp):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(hp.Int("units", 1, 4))])
    model.compile("sgd", "mse")
    return model


def _tuners():
    tuners = [(tuning.RandomSearch, {"max_trials": 2}),
              (tuning.BayesianOptimization, {"max_trials": 2}),
              (tuning.GridSearch, {"max_trials": 2}),
              (tuning.Hyperband, {"max_epochs": 3})]
    if importlib.util.find_spec("optuna") is not None:
        tuners.append((tuning.OptunaSearch, {"max_trials": 2}))
    return [pytest.param(cls, kwargs, id=cls.__name__) for cls, kwargs in tuners]


@pytest.mark.parametrize("tuner_class, kwargs", _tuners())
@pytest.mark.parametrize("argument, value, error, message", [
    ("seed", "a", TypeError, "must be an integer, not str. Received: seed='a'"),
    ("seed", 1.5, TypeError, "must be an integer, not float. Received: seed=1.5"),
    ("seed", True, TypeError, "must be an integer, not bool. Received: seed=True"),
    # Python's random seeds with abs(seed): -1 drew seed 1's stream backwards
    ("seed", -1, ValueError, "must be >= 0. Received: seed=-1"),
    ("seed", 2**32, ValueError, "must be <= 4294967295"),
    # KerasTuner ran 3 trials for max_trials=2.5
    ("max_trials", 2.5, TypeError, "must be an integer, not float"),
    # KerasTuner stopped the search after its first trial, failed or not
    ("max_consecutive_failed_trials", 0, ValueError, "must be > 0"),
    ("max_retries_per_trial", -1, ValueError, "must be >= 0"),
    # KerasTuner ran no execution and failed every trial
    ("executions_per_trial", 0, ValueError, "must be > 0"),
    # failed when the first trial ended
    ("progress", 3, TypeError, "must be None or a function progress(tuner, trial)"),
])
def test_every_tuner_refuses_a_bad_argument_before_its_folder_is_made(
        tmp_path, tuner_class, kwargs, argument, value, error, message):
    with pytest.raises(error, match=re.escape(f"Argument `{argument}` {message}")):
        tuner_class(build, objective=SCORE, directory=str(tmp_path), project_name="p",
                    **{**kwargs, argument: value})
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("tuner_class, kwargs", _tuners())
@pytest.mark.parametrize("objective, message", [
    # KerasTuner ran every trial with the score 0
    ([], "Argument `objective` must name at least one metric. Received: objective=[]"),
    (["val_loss", "val_loss"], "must name each metric once (val_loss more than once)"),
    # KerasTuner summed the two: every score 0
    ([keras_tuner.Objective("val_loss", "min"), keras_tuner.Objective("val_loss", "max")],
     "Received: objective=['val_loss', 'val_loss']"),
])
def test_every_tuner_refuses_no_objective_or_one_named_twice(tmp_path, tuner_class, kwargs,
                                                              objective, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tuner_class(build, objective=objective, directory=str(tmp_path), project_name="p",
                    **kwargs)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("tuner_class, kwargs", _tuners())
def test_every_tuner_keeps_a_good_seed(tmp_path, tuner_class, kwargs):
    tuner = tuner_class(build, objective=SCORE, seed=7, directory=str(tmp_path),
                        project_name="p", **kwargs)
    assert tuner.oracle.seed == 7


def _missing_driver():
    """A SQLAlchemy URL whose driver module is not installed here, and the module."""
    for module, dialect in (("pg8000", "postgresql+pg8000"), ("pymysql", "mysql+pymysql"),
                            ("MySQLdb", "mysql+mysqldb")):
        if importlib.util.find_spec(module) is None:
            return f"{dialect}://user@db-host/studies", module
    pytest.skip("every database driver this test knows is installed")


class TestStorage:
    @pytest.fixture(autouse=True)
    def _optuna(self):
        pytest.importorskip("optuna")

    @pytest.mark.parametrize("storage, error, message", [
        (3, TypeError, r"must be None, 'journal', 'journal:<path>', a database URL"),
        ("optuna.db", ValueError, r"it is not one of them\. Received: storage='optuna\.db'"),
        ("postgres://user@db-host/studies", ValueError,
         r"SQLAlchemy has no database dialect 'postgres' \(PostgreSQL's is 'postgresql'\)"),
        ("sqlite:///{tmp}/missing/study.db", ValueError,
         r"its file's folder {tmp}/missing does not exist"),
        ("journal:{tmp}/missing/study.journal", ValueError,
         r"its file's folder {tmp}/missing does not exist"),
        # these failed inside Optuna or SQLAlchemy with a traceback (IsADirectoryError,
        # "file is not a database", a JSON decode error), or called a file a missing folder
        ("journal:{tmp}", ValueError, r"{tmp} is a folder, not a file"),
        ("sqlite:///{tmp}", ValueError, r"{tmp} is a folder, not a file"),
        ("sqlite:///{tmp}/notes.txt", ValueError, r"{tmp}/notes.txt is not a SQLite database"),
        ("journal:{tmp}/notes.txt", ValueError,
         r"{tmp}/notes.txt is not an Optuna journal \(its first line is not a JSON record\)"),
        ("sqlite:///{tmp}/notes.txt/study.db", ValueError, r"{tmp}/notes.txt is a file, not a folder"),
    ])
    def test_a_storage_that_cannot_open_is_refused_before_the_folder_is_made(
            self, tmp_path, storage, error, message):
        (tmp_path / "notes.txt").write_text("my notes\n")
        if isinstance(storage, str):
            storage = storage.format(tmp=tmp_path)
        with pytest.raises(error, match="Argument `storage` .*" + message.format(tmp=tmp_path)):
            tuning.OptunaSearch(build, objective=SCORE, max_trials=2, storage=storage,
                                directory=str(tmp_path), project_name="p")
        assert not (tmp_path / "p").exists()
        assert (tmp_path / "notes.txt").read_text() == "my notes\n"

    def test_an_empty_file_or_an_earlier_search_s_storage_is_taken(self, tmp_path):
        """An empty file is a new database or journal; files Optuna wrote pass the check."""
        from keras_trainkit.tuning.optuna_storage import check_storage, make_storage

        for storage in (f"sqlite:///{tmp_path}/empty.db", f"journal:{tmp_path}/empty.journal"):
            (tmp_path / storage.rsplit("/", 1)[1]).touch()
            check_storage(storage)
        import optuna

        for storage in (f"sqlite:///{tmp_path}/used.db", f"journal:{tmp_path}/used.journal"):
            optuna.create_study(storage=make_storage(storage, str(tmp_path), None, None, None),
                                study_name="s")
            check_storage(storage)

    @pytest.mark.parametrize("arguments, error, message", [
        ({"max_retry": -1}, ValueError, "Argument `max_retry` must be >= 0"),
        ({"max_retry": 1.5}, TypeError, "Argument `max_retry` must be an integer, not float"),
        # compared with the interval: a raw TypeError from `<=` before
        ({"grace_period": "x"}, TypeError, "Argument `grace_period` must be an integer, not str"),
        ({"grace_period": 0}, ValueError, "Argument `grace_period` must be > 0"),
        ({"grace_period": 5, "heartbeat_interval": 10}, ValueError,
         "Argument `grace_period` must be greater than heartbeat_interval (10)"),
        # ignored before: no heartbeat, so no trial was ever failed for a missing one
        ({"grace_period": 60, "heartbeat_interval": None}, ValueError,
         "Argument `grace_period` needs a heartbeat: heartbeat_interval=None turns it off"),
        ({"study_name": ""}, ValueError, "Argument `study_name` must not be empty"),
        ({"study_name": 3}, TypeError, "Argument `study_name` must be of type str, not int"),
    ])
    def test_heartbeat_and_study_arguments(self, tmp_path, arguments, error, message):
        with pytest.raises(error, match=re.escape(message)):
            tuning.OptunaSearch(build, objective=SCORE, max_trials=2, directory=str(tmp_path),
                                project_name="p", **arguments)
        assert not (tmp_path / "p").exists()

    def test_the_grace_period_defaults_to_twice_the_interval(self, tmp_path):
        tuner = tuning.OptunaSearch(build, objective=SCORE, max_trials=2, heartbeat_interval=3,
                                    directory=str(tmp_path), project_name="p")
        assert tuner.oracle.grace_period == 6
        tuner = tuning.OptunaSearch(build, objective=SCORE, max_trials=2, heartbeat_interval=None,
                                    directory=str(tmp_path), project_name="q")
        assert tuner.oracle.grace_period is None

    def test_a_missing_driver_is_named_with_its_install_command(self, tmp_path):
        storage, module = _missing_driver()
        with pytest.raises(MissingPackage) as raised:
            tuning.OptunaSearch(build, objective=SCORE, max_trials=2, storage=storage,
                                directory=str(tmp_path), project_name="p")
        assert isinstance(raised.value, ImportError)
        assert f"needs the database driver {module!r}, which is not installed" in str(raised.value)
        assert f"pip install {module!r}" in str(raised.value)
        assert f"Received: storage={storage!r}" in str(raised.value)
        assert not (tmp_path / "p").exists()

    def test_a_refused_urls_password_is_not_printed(self, tmp_path):
        storage, module = _missing_driver()
        with_password = storage.replace("user@", "user:s3cret@")
        for bad in (with_password, "postgres://user:s3cret@db-host/studies"):
            with pytest.raises((ValueError, MissingPackage)) as raised:
                tuning.OptunaSearch(build, objective=SCORE, max_trials=2, storage=bad,
                                    directory=str(tmp_path), project_name="p")
            assert "s3cret" not in str(raised.value)
            assert "user:***@db-host" in str(raised.value)

    def test_storages_that_can_open_are_accepted_without_opening_them(self, tmp_path):
        from keras_trainkit.tuning.optuna_storage import check_storage

        for storage in (None, "journal", "journal:", f"journal:{tmp_path}/study.journal",
                        f"sqlite:///{tmp_path}/study.db", "sqlite://", "sqlite:///:memory:"):
            check_storage(storage)
        assert list(tmp_path.iterdir()) == []  # nothing was created
        if importlib.util.find_spec("psycopg2") is not None:
            check_storage("postgresql+psycopg2://user@127.0.0.1:1/nothing-listens-here")

    def test_trainkit_tune_prints_a_missing_driver_in_one_line(self, tmp_path, capsys):
        storage, module = _missing_driver()
        status = cli.main(["tune", "--dataset", "digits", "--model", "mlp", "--trials", "1",
                           "--epochs", "1", "--storage", storage,
                           "--output", str(tmp_path / "out")])
        error = capsys.readouterr().err
        assert status == 2
        assert error.splitlines()[-1].startswith(
            f"trainkit tune: error: Argument `storage` needs the database driver {module!r}")
        assert "Traceback" not in error
        assert not (tmp_path / "out" / "search").exists()
