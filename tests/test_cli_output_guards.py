"""Files a command would write over are refused before any work, and a resumed search
leaves no model that no longer shows it (found by a helper's audit of the CLI):

- `trainkit tune` in an --output without a search but with files of its report's names
  (a demo's learning_curves.png, the user's summary.txt) wrote over them;
- `trainkit lr-find` replaced lr_find.png and lr_find.json in --output (the current
  folder by default), an earlier sweep's or the user's;
- a resumed `trainkit tune` that made no ensemble or refit this time left the earlier
  run's ensemble_model.keras and best_model.keras beside a report of another best trial.
"""

import pytest

from keras_trainkit import cli
from keras_trainkit.commands import lr_find, tune

TINY = ["--dataset", "digits", "--model", "mlp", "--epochs", "1", "--ensemble", "1"]


def _no_work(monkeypatch, module):
    monkeypatch.setattr(module, "run", lambda args: pytest.fail("the command started its work"))


@pytest.mark.parametrize("name", ["learning_curves.png", "summary.txt", "best_hyperparameters.json"])
def test_tune_refuses_files_of_its_reports_names_without_a_search(tmp_path, capsys, monkeypatch, name):
    _no_work(monkeypatch, tune)
    (tmp_path / name).write_text("mine")
    assert cli.main(["tune", *TINY, "--output", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith("trainkit tune: error: Argument `--output` must name a folder without "
                               "files the search's report writes")
    assert f"it holds {name} and no search/ folder" in error[0]
    assert (tmp_path / name).read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_tune_takes_such_a_folder_with_overwrite_or_with_a_search(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(tune, "run", lambda args: ran.append(args.output) or 0)
    (tmp_path / "summary.txt").write_text("mine")
    assert cli.main(["tune", *TINY, "--output", str(tmp_path), "--overwrite"]) == 0
    (tmp_path / "search").mkdir()
    assert cli.main(["tune", *TINY, "--output", str(tmp_path)]) == 0
    assert len(ran) == 2


@pytest.mark.parametrize("name", lr_find.OUTPUTS)
def test_lr_find_refuses_to_replace_its_outputs_without_overwrite(tmp_path, capsys, monkeypatch, name):
    _no_work(monkeypatch, lr_find)
    (tmp_path / name).write_text("an earlier sweep")
    assert cli.main(["lr-find", "--output", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("trainkit lr-find: error: Argument `--output` must name "
                                                   "a folder without lr_find.png or lr_find.json")
    assert (tmp_path / name).read_text() == "an earlier sweep"
    monkeypatch.setattr(lr_find, "run", lambda args: 0)
    assert cli.main(["lr-find", "--output", str(tmp_path), "--overwrite"]) == 0


def test_a_resumed_search_removes_the_final_models_it_did_not_make_again(tmp_path, capsys):
    for name in ("ensemble_model.keras", "best_model.keras"):
        (tmp_path / name).write_text("an earlier run's")
    kept = str(tmp_path / "best_model.keras")
    tune._remove_stale_models(str(tmp_path), {kept})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model.keras"]
    assert capsys.readouterr().out.startswith(f"Removed {tmp_path / 'ensemble_model.keras'}: an earlier run's")
