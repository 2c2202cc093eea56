import keras_tuner
import pytest

from keras_trainkit import tuning


def test_median_rule_by_hand():
    pruner = tuning.MedianPruner(startup_trials=3, warmup_epochs=2)
    assert pruner.decide(1, 0.0, [0.9, 0.9, 0.9]) is None  # warm-up
    assert pruner.decide(2, 0.5, [0.9, 0.9]) is None  # too few others
    assert pruner.decide(2, 0.5, [0.4, 0.6, 0.9]) is not None  # median 0.6 > 0.5
    assert pruner.decide(2, 0.6, [0.4, 0.6, 0.9]) is None  # equal to the median


def test_asha_rungs_and_decisions():
    pruner = tuning.ASHAPruner(min_epochs=1, reduction_factor=3)
    assert pruner.rungs(27) == [0, 2, 8, 26]
    assert pruner.decide(1, 0.0, [1.0, 1.0]) is None  # epoch 1 is no rung
    # rung at epoch 2: 6 values -> keep top 2
    others = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert pruner.decide(2, 0.85, others) is None
    assert pruner.decide(2, 0.75, others) is not None
    assert pruner.decide(0, 0.1, []) is None  # the first trial at a rung always continues


def test_pruner_arguments():
    with pytest.raises(ValueError, match="Received: reduction_factor=1"):
        tuning.ASHAPruner(reduction_factor=1)
    with pytest.raises(ValueError, match="Received: startup_trials=0"):
        tuning.MedianPruner(startup_trials=0)
    with pytest.raises(ValueError, match="Received: pruner='best'"):
        tuning.get_pruner("best")
    assert tuning.get_pruner("none") is None


def _oracle(tmp_path, pruner, objective="val_accuracy"):
    oracle = tuning.PruningRandomSearchOracle(
        objective=keras_tuner.Objective(objective, "max" if "acc" in objective else "min"),
        max_trials=10, seed=0, pruner=pruner)
    oracle._set_project_dir(str(tmp_path), "p")
    hp = keras_tuner.HyperParameters()
    hp.Float("x", 0, 1)
    oracle.update_space(hp)
    return oracle


def _report(oracle, tuner_id, values, name="val_accuracy"):
    trial = oracle.create_trial(tuner_id)
    statuses = []
    for step, value in enumerate(values):
        statuses.append(oracle.update_trial(trial.trial_id, {name: value}, step=step).status)
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    return trial.trial_id, statuses


def test_oracle_prunes_worse_trial_and_records_it(tmp_path):
    oracle = _oracle(tmp_path, tuning.MedianPruner(startup_trials=2, warmup_epochs=1))
    _report(oracle, "a", [0.5, 0.6, 0.7])
    _report(oracle, "b", [0.5, 0.7, 0.8])
    trial_id, statuses = _report(oracle, "c", [0.5, 0.55])
    assert statuses == ["RUNNING", "STOPPED"]
    assert oracle.pruned_trials[trial_id]["epoch"] == 1
    trial = oracle.get_trial(trial_id)
    assert trial.status == "COMPLETED" and trial.score == pytest.approx(0.55)
    assert "median" in trial.message
    # the state survives a save and reload
    oracle.save()
    fresh = _oracle(tmp_path, "median")
    fresh.reload()
    assert trial_id in fresh.pruned_trials


def test_minimized_objective_prunes_larger_loss(tmp_path):
    oracle = _oracle(tmp_path, tuning.MedianPruner(startup_trials=2, warmup_epochs=0),
                     objective="val_loss")
    _report(oracle, "a", [1.0, 0.5], name="val_loss")
    _report(oracle, "b", [1.0, 0.4], name="val_loss")
    _, good = _report(oracle, "c", [0.9, 0.3], name="val_loss")
    _, bad = _report(oracle, "d", [2.0], name="val_loss")
    assert "STOPPED" not in good and bad == ["STOPPED"]


@pytest.mark.parametrize("oracle_class", [tuning.PruningRandomSearchOracle,
                                          tuning.PruningBayesianOptimizationOracle])
def test_seed_zero_is_a_seed(oracle_class, tmp_path):
    """KerasTuner's Oracle turns seed=0 into a random seed; ours keep it."""
    def first_values(run):
        oracle = oracle_class(objective="val_accuracy", max_trials=5, seed=0)
        oracle._set_project_dir(str(tmp_path), f"seed0_{run}")
        hp = keras_tuner.HyperParameters()
        hp.Float("learning_rate", 1e-5, 1e-1, sampling="log")
        hp.Int("width", 8, 512)
        oracle.update_space(hp)
        return [oracle.create_trial(f"tuner{i}").hyperparameters.values for i in range(3)]

    assert first_values(0) == first_values(1)


def _conditional_space():
    hp = keras_tuner.HyperParameters()
    family = hp.Choice("optimizer", ["sgd", "adam"])
    with hp.conditional_scope("optimizer", ["sgd"]):
        hp.Float("momentum", 0.0, 0.99)
    hp.Float("learning_rate", 1e-5, 1e-1, sampling="log")
    hp.Int("width", 8, 512)
    assert family == "sgd"
    return hp


def test_nearby_seeds_give_independent_searches(tmp_path):
    """KerasTuner seeds the n-th draw with seed + n, so seeds 1 and 2 shared most
    trials once a conditional hyperparameter put them in step; ours do not."""
    def trials(seed):
        oracle = tuning.PruningRandomSearchOracle(objective="val_accuracy", max_trials=40,
                                                  seed=seed)
        oracle._set_project_dir(str(tmp_path), f"seed{seed}")
        oracle.update_space(_conditional_space())
        values = []
        for _ in range(30):
            trial = oracle.create_trial("tuner0")
            values.append(trial.hyperparameters.values)
            oracle.end_trial(trial)
        return values

    one, two = trials(1), trials(2)
    assert not [v for v in two if v in one]
    assert trials(1) == one  # still reproducible


@pytest.mark.parametrize("oracle_class", [tuning.PruningRandomSearchOracle,
                                          tuning.PruningBayesianOptimizationOracle])
def test_start_from_defaults_runs_the_defaults_first(oracle_class, tmp_path):
    oracle = oracle_class(objective="val_accuracy", max_trials=5, seed=3, start_from_defaults=True)
    oracle._set_project_dir(str(tmp_path), "defaults")
    hp = keras_tuner.HyperParameters()
    hp.Float("learning_rate", 1e-5, 1e-1, sampling="log", default=4e-3)
    family = hp.Choice("optimizer", ["sgd", "adam"], default="adam")
    with hp.conditional_scope("optimizer", ["sgd"]):
        hp.Float("momentum", 0.0, 0.99, default=0.9)
    assert family == "adam"
    oracle.update_space(hp)
    first = oracle.create_trial("tuner0").hyperparameters.values
    assert first == {"learning_rate": 4e-3, "optimizer": "adam"}  # momentum is inactive
    # another worker's trial (KerasTuner hands a tuner its own running trial again)
    second = oracle.create_trial("tuner1").hyperparameters.values
    assert second != first
    with pytest.raises(TypeError, match="start_from_defaults"):
        oracle_class(objective="val_accuracy", start_from_defaults="yes")


def test_equal_scores_rank_in_trial_order_after_a_reload(tmp_path, monkeypatch):
    """KerasTuner reloads trials in file-listing order; among equal scores the
    earliest trial stays the best, as in the search that ran."""
    from keras_tuner.src import backend

    def oracle():
        made = tuning.PruningRandomSearchOracle(objective="val_accuracy", max_trials=5, seed=1)
        made._set_project_dir(str(tmp_path), "ties")
        made.update_space(_conditional_space())
        return made

    first = oracle()
    for _ in range(3):
        trial = first.create_trial("tuner0")
        first.update_trial(trial.trial_id, {"val_accuracy": 0.5}, step=0)
        trial.status = "COMPLETED"
        first.end_trial(trial)
    ids = [t.trial_id for t in first.get_best_trials(3)]
    assert ids == sorted(ids)

    glob = backend.io.glob
    monkeypatch.setattr(backend.io, "glob", lambda pattern: sorted(glob(pattern), reverse=True))
    again = oracle()
    again.reload()
    assert [t.trial_id for t in again.get_best_trials(3)] == ids
