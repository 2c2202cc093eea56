"""`trainkit` refusals: bad values refused before any work, a search in
`--output` or `--storage` never resumed, joined or removed by a command that
cannot honour it, and no traceback when a search ends without a finished trial."""

import types

import keras_tuner
import pytest

from keras_trainkit import cli
from keras_trainkit.commands import check_init, lr_find, tune

TINY = ["--dataset", "digits", "--model", "mlp", "--epochs", "1", "--ensemble", "1"]


def _no_work(monkeypatch, module):
    def refuse(args):
        raise AssertionError("the command started its work before checking its arguments")

    monkeypatch.setattr(module, "run", refuse)


def _old_search(folder):
    """A search folder as a finished earlier search leaves it (no training needed)."""
    (folder / "search" / "trial_0").mkdir(parents=True)
    (folder / "search" / "oracle.json").write_text("{}")
    (folder / "search" / "trial_0" / "trial.json").write_text("{}")
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


@pytest.mark.parametrize("argv, option, value", [
    (["tune", "--budget-minutes", "nan"], "--budget-minutes", "nan"),
    (["tune", "--budget-minutes", "inf"], "--budget-minutes", "inf"),
    # no trial logs `foo`: every trial trained and failed, then a traceback
    (["tune", "--objectives", "foo:max"], "--objectives", "foo:max"),
    (["tune", "--objectives", "val_accuracy:max,val_accuracy:min"], "--objectives",
     "val_accuracy:max,val_accuracy:min"),
    # numpy's "Seed must be between 0 and 2**32 - 1", after TensorFlow and the data loaded
    (["lr-find", "--seed", "-1"], "--seed", "-1"),
    (["check-init", "--seed", str(2**32)], "--seed", str(2**32)),
    # named their Python names (`start_lr`, `depth`), not the flags
    (["lr-find", "--start-lr", "0"], "--start-lr", "--start-lr=0"),
    (["check-init", "--depth", "0"], "--depth", "--depth=0"),
    # a missing --plot folder is checked, not created, before the other checks passed
    (["check-init", "--depth", "0", "--plot", "{output}/init.png"], "--depth", "--depth=0"),
    # named `x_batch` (an inner argument), after TensorFlow and the data loaded
    (["check-init", "--initializer", "lsuv", "--batch-size", "1"], "--batch-size", "--batch-size=1"),
])
def test_bad_values_are_refused_before_any_work(tmp_path, capsys, monkeypatch, argv, option,
                                                value):
    for module in (tune, lr_find, check_init):
        _no_work(monkeypatch, module)
    output = tmp_path / "out"
    argv = [arg.replace("{output}", str(output)) for arg in argv]
    if argv[0] != "check-init":
        argv = [*argv, "--output", str(output)]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"trainkit {argv[0]}: error: Argument `{option}`")
    assert value in error[0]
    assert not output.exists()


@pytest.mark.parametrize("refused", [
    ["--storage", "postgres://user@db-host/studies"],  # refused once the old search was gone
    ["--objectives", "val_accuracy:max,val_accuracy:min"],
])
def test_overwrite_keeps_the_old_search_when_the_new_one_is_refused(tmp_path, capsys, refused):
    before = _old_search(tmp_path)
    assert cli.main(["tune", *TINY, "--trials", "1", "--overwrite", *refused,
                     "--output", str(tmp_path)]) == 2
    assert "trainkit tune: error: Argument `" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_search_is_resumed_only_with_its_own_settings(tmp_path, capsys, monkeypatch):
    output = str(tmp_path / "out")
    assert cli.main(["tune", *TINY, "--trials", "1", "--output", output]) == 0
    first = capsys.readouterr().out
    assert "trial 1 of 1: completed" in first
    _no_work(monkeypatch, tune)
    # another model and another data split: it resumed the mlp search with the cnn's
    # space, then failed to load the mlp trials' weights into cnn models
    assert cli.main(["tune", *TINY, "--trials", "1", "--model", "cnn", "--seed", "3",
                     "--output", output]) == 2
    error = capsys.readouterr().err
    assert error.startswith("trainkit tune: error: Argument `--output` holds a search")
    assert "--model mlp, not cnn" in error and "--seed 1, not 3" in error
    assert f"Received: --output={output!r}" in error
    for allowed in (["--trials", "2", "--budget-minutes", "5", "--pruner", "asha"],  # resume
                    ["--model", "cnn", "--overwrite"]):  # start afresh
        with pytest.raises(AssertionError, match="started its work"):
            cli.main(["tune", *TINY, *allowed, "--output", output])


def _external_study(path):
    """A study named like trainkit's ("search"), made by Optuna itself, with one trial."""
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(study_name="search", storage=f"sqlite:///{path}")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    return f"sqlite:///{path}"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_external_storage_holding_another_search_is_refused(tmp_path, capsys):
    storage = _external_study(tmp_path / "shared.db")
    # a new search in its own --output: it joined the other study, ran no trial, and
    # crashed with an IndexError
    output = tmp_path / "new"
    assert cli.main(["tune", *TINY, "--trials", "1", "--storage", storage,
                     "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert "Argument `--storage` holds a study 'search' (1 trials)" in error
    assert not output.exists()  # a refused command leaves no empty folder behind
    # --overwrite removed only the folder: the new search continued the old study
    before = _old_search(tmp_path / "old")
    assert cli.main(["tune", *TINY, "--trials", "1", "--storage", storage, "--overwrite",
                     "--output", str(tmp_path / "old")]) == 2
    assert "Argument `--overwrite` starts afresh in --output only" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path / "old") for p in (tmp_path / "old").rglob("*")) == before


def test_a_search_without_a_finished_trial_ends_with_one_error_line(tmp_path, capsys):
    # a budget spent before the first trial: an IndexError's traceback before
    status = cli.main(["tune", *TINY, "--trials", "2", "--budget-minutes", "0.00001",
                       "--output", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 1
    assert "0 trials" in captured.out
    assert captured.err.strip().splitlines()[-1].startswith(
        "trainkit tune: error: no trial of the search has finished with a score")


def test_the_progress_line_names_the_objective(capsys):
    """With `--objectives val_loss:min` the lines said `val_accuracy=<the val_loss>`."""
    ended = types.SimpleNamespace(trial_id="0", score=1.25, status="COMPLETED", message=None)
    oracle = types.SimpleNamespace(objective=keras_tuner.Objective("val_loss", "min"),
                                   get_trial=lambda trial_id: ended,
                                   get_best_trials=lambda n: [ended], pruned_trials=[])
    tuner = types.SimpleNamespace(oracle=oracle, tuner_id="tuner0")
    tune._print_progress(tuner, ended, started=0.0, total=2)
    line = capsys.readouterr().out
    assert line.startswith("trial 1 of 2: completed val_loss=1.2500  best so far=1.2500")
    assert "val_accuracy" not in line


@pytest.mark.parametrize("argv, option", [
    (["lr-find", "--optimizer", "no_such_optimizer", "--output", "{output}"], "--optimizer"),
    (["check-init", "--initializer", "no_such_init", "--plot", "{output}/init.png"], "--initializer"),
    (["check-init", "--activation", "no_such_activation", "--plot", "{output}/init.png"], "--activation"),
])
def test_a_bad_name_leaves_no_new_output_folder(tmp_path, capsys, monkeypatch, argv, option):
    """The names need TensorFlow, so they are checked after it is imported, before the data;
    the output folder was created before they were, and stayed behind empty."""
    from keras_trainkit import datasets

    monkeypatch.setattr(datasets, "load", lambda *a, **k: pytest.fail("the data were loaded"))
    output = tmp_path / "out"
    assert cli.main([arg.replace("{output}", str(output)) for arg in argv]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"trainkit {argv[0]}: error: Argument `{option}` must name")
    assert not output.exists()


def test_lr_find_names_the_flag_of_an_optimizer_it_cannot_build(tmp_path, capsys):
    """`--optimizer lookahead` said only "Lookahead.__init__() missing 1 required
    positional argument", after loading the data and building the model."""
    assert cli.main(["lr-find", "--dataset", "digits", "--model", "mlp", "--optimizer",
                     "lookahead", "--output", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith("trainkit lr-find: error: Argument `--optimizer` must name")
    assert error[0].endswith("Received: --optimizer='lookahead'")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_removes_the_old_searchs_report_and_models_and_nothing_else(tmp_path):
    # Before, a new search that writes no ensemble (or other hyperparameters) left the old
    # search's ensemble_model.keras and score_vs_*.png beside its own report.
    output = tmp_path / "out"
    _old_search(output)
    old = ["ensemble_model.keras", "best_model.keras", "summary.txt", "score_vs_old_units.png",
           "pareto_front.json", "learning_curves.png"]
    for name in old:
        (output / name).write_text("old")
    (output / "my_notes.txt").write_text("mine")
    args = cli.build_parser().parse_args(["tune", *TINY, "--overwrite", "--output", str(output)])
    tune._prepare_output(args)
    assert sorted(p.name for p in output.iterdir()) == ["my_notes.txt", "search"]
    assert [p.name for p in (output / "search").iterdir()] == ["trainkit_tune.json"]


def test_overwrite_in_a_folder_that_held_no_search_removes_none_of_its_files(tmp_path):
    """With no search recorded in --output, files named like the report's are the user's:
    --overwrite removed best_model.keras, summary.txt and hparams/ there (found by a helper)."""
    output = tmp_path / "out"
    (output / "hparams").mkdir(parents=True)
    (output / "hparams" / "keep.txt").write_text("mine")
    for name in ("best_model.keras", "summary.txt", "score_vs_width.png"):
        (output / name).write_text("mine")
    args = cli.build_parser().parse_args(["tune", *TINY, "--overwrite", "--output", str(output)])
    tune._prepare_output(args)
    assert sorted(p.name for p in output.iterdir()) == [
        "best_model.keras", "hparams", "score_vs_width.png", "search", "summary.txt"]
    assert (output / "hparams" / "keep.txt").read_text() == "mine"
    assert all((output / name).read_text() == "mine"
               for name in ("best_model.keras", "summary.txt", "score_vs_width.png"))


@pytest.mark.parametrize("command, argv, hint", [
    ("tune", ["tune", *TINY, "--trials", "1"], "; run the same command again to resume the search"),
    ("check-init", ["check-init", "--depth", "1", "--width", "4"], ""),
])
def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, capsys, monkeypatch, command, argv, hint):
    """Ctrl-C in a command printed a KeyboardInterrupt traceback of about 190 lines."""
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr({"tune": tune, "check-init": check_init}[command], "run", interrupted)
    if command == "tune":
        argv = [*argv, "--output", str(tmp_path / "out")]
    assert cli.main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines() == [f"trainkit {command}: interrupted{hint}"]


def test_a_reader_that_leaves_ends_the_output_quietly():
    """`trainkit datasets --json | true` printed a BrokenPipeError traceback and exited 1."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has left before the command writes
    try:
        result = subprocess.run([sys.executable, "-m", "keras_trainkit_cli", "datasets", "--json"],
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
