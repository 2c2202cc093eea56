"""The KerasTuner-side tuning features: oracles driven with synthetic results,
expected values worked out by hand (KerasTuner 1.4.8's semantics)."""

import keras
import keras_tuner
import numpy as np
import pytest

from keras_trainkit import tuning
from keras_trainkit.tuning.report import trial_records


def _oracle(tmp_path, pruner=None):
    oracle = tuning.PruningRandomSearchOracle(
        objective=keras_tuner.Objective("val_accuracy", "max"), max_trials=10, seed=0,
        pruner=pruner)
    oracle._set_project_dir(str(tmp_path), "p")
    oracle.verbose = 0
    hp = keras_tuner.HyperParameters()
    hp.Float("x", 0, 1)
    oracle.update_space(hp)
    return oracle


def _run(oracle, tuner_id, executions):
    """Report ``executions`` (a list of per-epoch value lists) as a TrainkitTunerMixin
    tuner does: every epoch of every execution at ``step=epoch``; a STOPPED answer ends
    the trial (no further execution). Returns the trial id and where it stopped."""
    trial = oracle.create_trial(tuner_id)
    stopped = None
    for execution, values in enumerate(executions):
        for step, value in enumerate(values):
            answer = oracle.update_trial(trial.trial_id, {"val_accuracy": value}, step=step)
            if answer.status == "STOPPED":
                stopped = (execution, step)
                break
        if stopped:
            break
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    return trial.trial_id, stopped


class _Search:
    """What the report needs of a tuner: its oracle."""

    def __init__(self, oracle):
        self.oracle = oracle


def test_a_later_execution_is_not_pruned_so_its_score_is_the_mean(tmp_path):
    oracle = _oracle(tmp_path, tuning.MedianPruner(startup_trials=1, warmup_epochs=0))
    first, _ = _run(oracle, "a", [[0.5, 0.6, 0.9], [0.5, 0.6, 0.7]])
    # Its first execution is never below the median; its second starts lower (0.3).
    second, stopped = _run(oracle, "b", [[0.5, 0.6, 0.95], [0.3, 0.6, 0.5]])
    assert stopped is None and second not in oracle.pruned_trials
    # Per-epoch means over both executions: a [0.5, 0.6, 0.8], b [0.4, 0.6, 0.725].
    assert oracle.get_trial(first).score == pytest.approx(0.8)
    assert oracle.get_trial(second).score == pytest.approx(0.725)
    # Before, b was pruned at epoch 0 of its second execution and kept 0.95 from its
    # first execution alone at epochs 1-2: a pruned trial ranked best.
    assert oracle.get_best_trials(1)[0].trial_id == first


def test_a_first_execution_is_still_pruned_and_runs_no_other(tmp_path):
    oracle = _oracle(tmp_path, tuning.MedianPruner(startup_trials=1, warmup_epochs=0))
    _run(oracle, "a", [[0.5, 0.6, 0.9], [0.5, 0.6, 0.7]])
    trial_id, stopped = _run(oracle, "b", [[0.2, 0.3, 0.4], [0.9, 0.9, 0.9]])
    assert stopped == (0, 0) and oracle.pruned_trials[trial_id]["epoch"] == 0
    assert oracle.get_trial(trial_id).score == pytest.approx(0.2)


def test_report_curve_is_the_mean_over_executions_as_the_oracle_scores(tmp_path):
    oracle = _oracle(tmp_path)
    _run(oracle, "a", [[0.2, 0.4, 0.6], [0.4, 0.6, 0.8]])
    record = trial_records(_Search(oracle))[0]
    assert record.curve == [(1, pytest.approx(0.3)), (2, pytest.approx(0.5)),
                            (3, pytest.approx(0.7))]
    # the curve's best point is the trial's score (before: execution 0's 0.6 against 0.7)
    assert max(value for _, value in record.curve) == pytest.approx(record.score)


def _build(hp):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


@pytest.mark.parametrize("objective", [
    keras_tuner.Objective("val_loss", "minimize"),
    [keras_tuner.Objective("val_loss", "min"), keras_tuner.Objective("val_mae", "maximum")],
])
def test_an_objective_direction_other_than_min_or_max_is_refused(objective, tmp_path):
    # KerasTuner takes it and fails every trial at its first report, after training it.
    with pytest.raises(ValueError, match="direction 'min' or 'max'.*Received: objective="):
        tuning.RandomSearch(_build, objective=objective, directory=str(tmp_path))


def test_hyperband_refuses_max_epochs_below_one(tmp_path):
    # KerasTuner takes max_epochs=0 and raises an IndexError at the search's first trial.
    with pytest.raises(ValueError, match="Received: max_epochs=0"):
        tuning.Hyperband(_build, objective="val_loss", max_epochs=0, directory=str(tmp_path))


def test_our_hyperband_report_puts_a_continued_trial_at_the_epochs_it_trained(tmp_path):
    # Our tuners report every epoch at Keras's epoch index, which a fit from
    # initial_epoch=1 counts 1, 2 (KerasTuner's own Hyperband reports one step, counted
    # from initial_epoch). Before, the report added initial_epoch again: epochs 3 and 4
    # of a search whose max_epochs is 3.
    tuner = tuning.Hyperband(_build, objective="val_accuracy", max_epochs=3, factor=3,
                             directory=str(tmp_path))
    oracle = tuner.oracle
    oracle.verbose = 0
    hp = keras_tuner.HyperParameters()
    hp.Int("units", 1, 8)
    oracle.update_space(hp)
    trial = oracle.create_trial("tuner0")
    trial.hyperparameters.values.update({"tuner/initial_epoch": 1, "tuner/epochs": 3})
    for step, value in ((1, 0.5), (2, 0.7)):
        oracle.update_trial(trial.trial_id, {"val_accuracy": value}, step=step)
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    record = trial_records(tuner)[0]
    assert record.curve == [(2, 0.5), (3, 0.7)] and record.epochs == 2
