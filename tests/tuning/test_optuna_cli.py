"""`trainkit tune --sampler/--storage/--objectives`: an Optuna study behind the command."""

import json

import pytest

optuna = pytest.importorskip("optuna")

from keras_trainkit import cli  # noqa: E402
from keras_trainkit.commands import tune  # noqa: E402
from tests.tuning.test_report_and_cli import PNG_SIGNATURE, _tune_args  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.mark.slow
def test_tune_with_a_sampler_runs_an_optuna_study_from_the_demo_recipe(tmp_path, capsys):
    output = tmp_path / "out"
    assert cli.main(["tune", "--dataset", "digits", "--model", "mlp", "--trials", "2",
                     "--epochs", "1", "--sampler", "tpe", "--ensemble", "1",
                     "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    database = output / "search" / "optuna.db"
    assert f"optuna-dashboard sqlite:///{database}" in printed
    # --log-level (WARNING by default) is Optuna's too: no "[I ...] A new study created" lines
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{database}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    # the focused space's first trial is the demo recipe (enqueued at the defaults)
    args = _tune_args(tmp_path, "--dataset", "digits", "--model", "mlp")
    hypermodel = tune.recipe(args, (64,), 10)
    import keras_tuner
    hps = keras_tuner.HyperParameters()
    hypermodel.build(hps)
    assert study.trials[0].params["batch_size"] == hps.values["batch_size"]
    assert study.trials[0].params["optimizer"] == hps.values["optimizer"]


@pytest.mark.slow
def test_tune_with_two_objectives_draws_the_pareto_front(tmp_path, capsys):
    output = tmp_path / "out"
    assert cli.main(["tune", "--dataset", "digits", "--model", "mlp", "--trials", "3",
                     "--epochs", "1", "--objectives", "val_accuracy:max,num_params:min",
                     "--sampler", "nsga2", "--space", "full",
                     "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "Pareto front: trials " in printed and "pruner: none" in printed
    # each finished trial's line shows every objective, and no single "best" score
    trial_lines = [line for line in printed.splitlines() if line.startswith("trial ")]
    assert len(trial_lines) == 3
    assert all("val_accuracy=" in line and "num_params=" in line and "best" not in line
               for line in trial_lines)
    # no single "best" model: each front model's test accuracy; no ensemble by default
    assert "Best trial's model" not in printed and "The Pareto front's models" in printed
    front_ids = printed.split("Pareto front: trials ")[1].split(" (")[0].split(", ")
    assert [line.split()[1].rstrip(":") for line in printed.splitlines()
            if line.startswith("  trial ")] == front_ids
    assert not (output / "ensemble_model.keras").exists()
    assert (output / "pareto_front.png").read_bytes().startswith(PNG_SIGNATURE)
    front = json.loads((output / "pareto_front.json").read_text())
    assert front and all(set(e["objectives"]) == {"val_accuracy", "num_params"} for e in front)


def test_optuna_flags_choose_the_optuna_tuner_and_are_checked(tmp_path, capsys):
    from keras_trainkit import tuning

    args = _tune_args(tmp_path, "--dataset", "digits", "--model", "mlp", "--storage", "journal",
                      "--trials", "5", "--seed", "2")
    made = tune.make_tuner(args, (64,), 10)
    assert isinstance(made, tuning.OptunaSearch) and made.oracle.storage_argument == "journal"
    assert isinstance(made.oracle.pruner, tuning.MedianPruner) and made.oracle.max_trials == 5
    assert tune.parse_objectives("val_accuracy:max, num_params:min") == [
        ("val_accuracy", "max"), ("num_params", "min")]
    for argv, message in [
        (["--tuner", "random", "--sampler", "tpe"], "--tuner` must be optuna with --sampler"),
        (["--objectives", "val_accuracy"], "--objectives` must be NAME:max or NAME:min"),
        (["--objectives", "val_accuracy:max,num_params:min", "--pruner", "asha"],
         "cannot be used with several --objectives"),
        (["--sampler", "tpe", "--parallel", "2"], "--parallel` must be 1 with --tuner optuna"),
    ]:
        assert cli.main(["tune", *argv, "--output", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err
