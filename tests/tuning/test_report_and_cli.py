"""`trainkit tune` end to end: table, PNGs, best hyperparameters and HParams logs."""

import json

import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from keras_trainkit import cli

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
                       "--epochs", "2", "--pruner", "asha", "--output", str(output)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "trial 3 of 3" in printed and "best so far" in printed
    assert "rank  trial status" in printed and "Best model's test accuracy" in printed

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
    assert cli.main(["tune", "--dataset", "digits", "--model", "mlp", "--trials", "3",
                     "--epochs", "2", "--output", str(output)]) == 0
    assert "trial 1 of 3" not in capsys.readouterr().out


def test_tune_rejects_bad_arguments(tmp_path):
    assert cli.main(["tune", "--trials", "0", "--output", str(tmp_path)]) == 2
    assert cli.main(["tune", "--budget-minutes", "-1", "--output", str(tmp_path)]) == 2
    assert cli.main(["tune", "--seed", "-1", "--output", str(tmp_path)]) == 2
    assert cli.main(["tune", "--tuner", "hyperband", "--seed", "0", "--output", str(tmp_path)]) == 2
