"""`trainkit tune` end to end: table, PNGs, best hyperparameters and HParams logs."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from keras_trainkit import cli
from keras_trainkit.commands.demo import split
from keras_trainkit.tuning.oracles import SEED_STRIDE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _hparams_events(folder):
    """Plugin contents of every HParams summary below ``folder``."""
    contents = []
    for path in folder.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content)
                    contents.append(data)
    return contents


@pytest.mark.slow
def test_trainkit_tune_small_budget(tmp_path, capsys):
    output = tmp_path / "out"
    status = cli.main(["tune", "--dataset", "digits", "--model", "mlp", "--trials", "3",
                       "--epochs", "2", "--pruner", "asha", "--refit", "--output", str(output)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "trial 3 of 3" in printed and "best so far" in printed
    assert "rank  trial status" in printed and "Best trial's model" in printed
    # each progress line ends with the id the table, the plots and the folders use
    progress_ids = sorted(line.rsplit("trial_id=", 1)[1] for line in printed.splitlines()
                          if line.startswith("trial ") and " of 3" in line)
    folders = sorted(p.name.removeprefix("trial_") for p in (output / "search").rglob("trial_*")
                     if p.is_dir())
    assert progress_ids == folders and len(folders) == 3
    # --refit: the best recipe trained again on training + validation
    digits_examples = 1437  # 80% of scikit-learn's 1797 digits
    assert f"refit on training + validation ({digits_examples} examples)" in printed
    refit = keras.models.load_model(output / "best_model.keras")
    assert refit.output_shape == (None, 10)
    # --ensemble (default 5, so all three trials): saved, and the printed accuracy is its own
    ensemble = keras.models.load_model(output / "ensemble_model.keras")
    members = [layer.name for layer in ensemble.layers if isinstance(layer, keras.Model)]
    assert sorted(members) == ["trial_0", "trial_1", "trial_2"]
    _, _, (x_test, y_test) = split("digits", 1)
    accuracy = np.mean(np.argmax(ensemble.predict(x_test, verbose=0), axis=1) == y_test)
    assert f"Ensemble of the 3 best trials' models (trials {members[0].removeprefix('trial_')}, " in printed
    assert f"test accuracy {accuracy:.4f} (saved to " in printed

    best = json.loads((output / "best_hyperparameters.json").read_text())
    assert best["objective"] == "val_accuracy" and "optimizer" in best["hyperparameters"]
    for name in ["score_by_trial.png", "learning_curves.png", "score_vs_optimizer.png"]:
        data = (output / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, name
    contents = _hparams_events(output / "hparams")
    experiments = [c for c in contents if c.HasField("experiment")]
    sessions = [c for c in contents if c.HasField("session_start_info")]
    assert len(experiments) == 1
    names = {h.name for h in experiments[0].experiment.hparam_infos}
    assert {"optimizer", "batch_size", "width"} <= names
    assert len(sessions) == 3
    assert all("optimizer" in s.session_start_info.hparams for s in sessions)

    # rerunning resumes the finished search instead of starting again
    writer = tf.summary.create_file_writer(str(output / "hparams" / "trial_0"))
    with writer.as_default():
        tf.summary.scalar("mine", 1.0, step=0)  # a log of one's own, not a report's
    writer.close()
    assert cli.main(["tune", "--dataset", "digits", "--model", "mlp", "--trials", "3",
                     "--epochs", "2", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "trial 1 of 3" not in printed and "refit" not in printed
    # its report replaced the first one's HParams logs (TensorBoard showed both) ...
    contents = _hparams_events(output / "hparams")
    assert sum(c.HasField("experiment") for c in contents) == 1
    assert sum(c.HasField("session_start_info") for c in contents) == 3
    # ... and left the log of one's own
    mine = [v.tag for path in (output / "hparams" / "trial_0").glob("events.out.tfevents.*")
            for event in tf.compat.v1.train.summary_iterator(str(path))
            for v in event.summary.value]
    assert mine.count("mine") == 1


def test_tune_rejects_bad_arguments(tmp_path):
    assert cli.main(["tune", "--trials", "0", "--output", str(tmp_path)]) == 2
    assert cli.main(["tune", "--budget-minutes", "-1", "--output", str(tmp_path)]) == 2
    assert cli.main(["tune", "--seed", "-1", "--output", str(tmp_path)]) == 2
    assert cli.main(["tune", "--ensemble", "0", "--output", str(tmp_path)]) == 2


def _tune_args(tmp_path, *argv):
    import argparse

    from keras_trainkit.commands import tune

    parser = argparse.ArgumentParser()
    tune.configure(parser)
    args = parser.parse_args(list(argv))
    args.project_dir = str(tmp_path / "search")
    return args


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband"])
def test_every_flag_reaches_every_tuner(tmp_path, tuner):
    """`--isolate`, `--budget-minutes`, `--trials`, `--seed`, the progress lines and the
    focused space's first trial work with each `--tuner` (hyperband dropped two before)."""
    from keras_trainkit import tuning
    from keras_trainkit.commands import tune

    args = _tune_args(tmp_path, "--dataset", "digits", "--model", "mlp", "--tuner", tuner,
                      "--isolate", "--budget-minutes", "10", "--trials", "7", "--seed", "3",
                      "--epochs", "4")
    made = tune.make_tuner(args, (64,), 10)
    assert isinstance(made, tuning.TrainkitTunerMixin)
    assert made.isolate_trials is True and made.time_budget == 600
    assert made.progress is not None and made.oracle.max_trials == 7
    assert made.oracle.seed == 3 and made.oracle.start_from_defaults
    if tuner == "hyperband":
        assert isinstance(made, tuning.Hyperband) and made.oracle.max_epochs == 4
        assert made.oracle.pruner is None
    else:
        assert isinstance(made.oracle.pruner, tuning.MedianPruner)  # the default rule


def test_flags_a_tuner_cannot_honour_are_refused(tmp_path, capsys):
    from keras_trainkit.commands import tune

    for pruner in ("median", "asha"):
        assert cli.main(["tune", "--tuner", "hyperband", "--pruner", pruner,
                         "--output", str(tmp_path)]) == 2
        assert "--tuner hyperband" in capsys.readouterr().err
    args = _tune_args(tmp_path, "--tuner", "hyperband", "--pruner", "none")
    tune.check_tuner_flags(args)  # "none" asks for nothing hyperband lacks
    args = _tune_args(tmp_path, "--tuner", "hyperband")
    assert tune.make_tuner(args, (64,), 10).oracle.max_trials is None  # no cap by default


@pytest.mark.parametrize("tuner", ["random", "hyperband"])
@pytest.mark.parametrize("dataset, model, shape", [("mnist1d", "cnn", (40,)), ("digits", "mlp", (64,))])
def test_focused_space_starts_from_the_demo_recipe(tmp_path, dataset, model, shape, tuner):
    """`trainkit tune`'s first trial is the `trainkit demo` recipe; `--space full` is wider."""
    import argparse

    from keras_trainkit.commands import demo, tune

    parser = argparse.ArgumentParser()
    tune.configure(parser)
    args = parser.parse_args(["--dataset", dataset, "--model", model, "--tuner", tuner])
    args.project_dir = str(tmp_path / "search")
    first = tune.make_tuner(args, shape, 10).oracle.create_trial("tuner0").hyperparameters.values
    recipe = demo.RECIPES[dataset][model]
    assert first["optimizer"] == "adamw" and first["schedule"] == "warmup_cosine"
    assert first["adamw_learning_rate"] == recipe["learning_rate"]
    assert first["adamw_weight_decay"] == recipe["weight_decay"]
    assert (first["batch_size"], first["epochs"]) == (recipe["batch_size"], recipe["epochs"])
    assert first["clip_norm"] == demo.CLIP_NORM
    assert first.get("shift", 0) == recipe["shift"]
    assert first["dropout"] == recipe["model"].get("dropout", 0.0)
    if model == "cnn":
        filters = recipe["model"]["filters"]
        assert (first["blocks"], first["filters"]) == (len(filters), filters[0])
    else:
        assert (first["depth"], first["width"]) == (recipe["model"]["depth"], recipe["model"]["width"])

    args = parser.parse_args(["--dataset", dataset, "--model", model, "--space", "full"])
    full = tune.recipe(args, shape, 10)
    assert "sgd" in full.optimizer_space.families and "constant" in full.schedule_space.families
    assert full.training_space.epochs == (recipe["epochs"], recipe["epochs"])


@pytest.mark.parametrize("seed", [0, 2])
def test_hyperband_searches_get_a_seed_stream_of_their_own(tmp_path, seed):
    """`trainkit tune --tuner hyperband` seeds KerasTuner's Hyperband like our oracles
    (0 is a seed, nearby seeds are far apart) and keeps a resumed search's stream."""
    import argparse

    from keras_trainkit.commands import tune

    parser = argparse.ArgumentParser()
    tune.configure(parser)
    args = parser.parse_args(["--dataset", "digits", "--model", "mlp", "--tuner", "hyperband",
                              "--seed", str(seed)])
    args.project_dir = str(tmp_path / "search")
    tuner = tune.make_tuner(args, (64,), 10)
    oracle = tuner.oracle
    assert (oracle.seed, oracle._seed_state) == (seed, seed * SEED_STRIDE)
    trial = oracle.create_trial("tuner0")
    drawn = oracle._seed_state
    assert drawn > seed * SEED_STRIDE
    oracle.end_trial(trial)  # saves the oracle
    tuner.save()  # as after every trial of a search

    resumed = tune.make_tuner(args, (64,), 10).oracle
    assert resumed._seed_state == drawn


@pytest.mark.slow
def test_one_finished_trial_makes_no_ensemble(tmp_path, capsys):
    """With the default --ensemble 5 and one trial, an "ensemble" of that one model was
    printed and saved, though --ensemble 1 (the best trial alone) skips it."""
    output = tmp_path / "out"
    assert cli.main(["tune", "--dataset", "digits", "--model", "mlp", "--trials", "1",
                     "--epochs", "1", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "No ensemble: only trial 0's model could join it (the model above)" in printed
    assert "Ensemble of the" not in printed
    assert not (output / "ensemble_model.keras").exists()
