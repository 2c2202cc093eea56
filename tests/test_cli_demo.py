"""`trainkit demo` in a very short run: outputs exist and the summary is printed."""

import json

from keras_trainkit import cli


def test_demo_mnist1d_short_run(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--models", "mlp", "--epochs", "1", "--subset", "300", "--seed", "1",
                     "--verbose", "0", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert str(out.resolve()) in text
    assert "Test accuracy on mnist1d" in text and "logistic regression" in text and "68%" in text
    assert (out / "learning_curves.png").stat().st_size > 1000
    summary = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in summary["results"]] == ["mlp"]
    for result in summary["results"]:
        assert 0.0 <= result["test_accuracy"] <= 1.0 and result["epochs_run"] == 1
        assert list((out / "tensorboard" / result["model"] / "train").glob("events.out.tfevents.*"))
        assert list((out / "tensorboard" / result["model"] / "validation").glob("events.*"))


def test_demo_digits_one_model(tmp_path, capsys):
    out = tmp_path / "digits"
    assert cli.main(["demo", "--dataset", "digits", "--models", "cnn", "--epochs", "1",
                     "--subset", "200", "--verbose", "2", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "accuracy:" in text and "Test accuracy on digits (360 examples)" in text
    assert (out / "learning_curves.png").exists()


def test_demo_bad_arguments(capsys):
    assert cli.main(["demo", "--models", "resnet"]) == 2
    assert "Received: --models=resnet" in capsys.readouterr().err
    assert cli.main(["demo", "--epochs", "0"]) == 2
    assert cli.main(["demo", "--seed", "-1"]) == 2
    assert "Received: --seed=-1" in capsys.readouterr().err
    assert cli.main(["demo", "--seed", str(2**32)]) == 2
    assert f"Received: --seed={2**32}" in capsys.readouterr().err


def test_demo_refuses_a_model_named_twice(tmp_path, capsys):
    """Before, ``--models mlp,mlp`` trained the MLP twice into the same folders."""
    assert cli.main(["demo", "--models", "mlp,cnn,mlp", "--output", str(tmp_path / "o")]) == 2
    assert "must name each model once. Received: --models=mlp,cnn,mlp" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_demo_started_in_the_same_second_gets_its_own_default_folder(tmp_path, monkeypatch):
    """Before, two demos started in one second wrote into one folder (``<dataset>-<time>``)."""
    import argparse
    from datetime import datetime

    from keras_trainkit.commands import demo

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 12, 6, 15, 4, 5)

    monkeypatch.setattr(demo, "datetime", Frozen)
    monkeypatch.chdir(tmp_path)
    folders = []
    for _ in range(3):
        args = argparse.Namespace(dataset="digits", models="mlp", epochs=None, seed=0,
                                  subset=None, output=None, overwrite=False)
        demo.check(args)
        folders.append(args.output)
    assert folders == ["trainkit-demo/digits-20261206-150405",
                       "trainkit-demo/digits-20261206-150405-2",
                       "trainkit-demo/digits-20261206-150405-3"]
    assert all((tmp_path / folder).is_dir() for folder in folders)


def _event_files(folder):
    return sorted(path.name for path in folder.rglob("events.out.tfevents.*"))


def test_a_second_demo_into_the_same_output_is_refused_without_overwrite(tmp_path, capsys):
    """Before, a second demo into one ``--output`` replaced the first one's results.json
    (a run with other ``--models`` lost the first's models) and added its event files to the
    first's TensorBoard folders, which then drew both runs' curves as one."""
    out = tmp_path / "demo"
    first = ["demo", "--dataset", "digits", "--models", "mlp", "--epochs", "1", "--subset", "100",
             "--verbose", "0", "--output", str(out)]
    assert cli.main(first) == 0
    capsys.readouterr()
    results = (out / "results.json").read_text()
    events = _event_files(out / "tensorboard")
    user_file = out / "notes.txt"
    user_file.write_text("mine")

    second = ["demo", "--dataset", "digits", "--models", "cnn", "--epochs", "1", "--subset", "100",
              "--verbose", "0", "--output", str(out)]
    assert cli.main(second) == 2
    err = capsys.readouterr().err
    assert "Argument `--output` must name a folder without an earlier demo's outputs" in err
    assert "results.json, learning_curves.png, tensorboard/mlp" in err and "--overwrite" in err
    assert (out / "results.json").read_text() == results  # nothing touched
    assert _event_files(out / "tensorboard") == events

    assert cli.main(second + ["--overwrite"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in summary["results"]] == ["cnn"]
    assert not (out / "tensorboard" / "mlp").exists()  # the replaced run's curves are gone
    assert len(_event_files(out / "tensorboard" / "cnn" / "train")) == 1
    assert user_file.read_text() == "mine"  # only the demo's own outputs are removed


def test_a_demo_into_a_folder_of_other_files_runs_without_overwrite(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "data.csv").write_text("1,2\n")
    assert cli.main(["demo", "--dataset", "digits", "--models", "mlp", "--epochs", "1",
                     "--subset", "100", "--verbose", "0", "--output", str(out)]) == 0
    assert (out / "results.json").exists() and (out / "data.csv").read_text() == "1,2\n"
