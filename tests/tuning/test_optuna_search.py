"""OptunaSearch: an Optuna study behind a KerasTuner tuner (values, seeds, pruning,
storage, several objectives). Tiny models: a trial trains a one-weight model a few
epochs; its objective ``score`` is set from the hyperparameters (``_optuna_helpers``)."""

import json
import os
import time

import keras
import keras_tuner
import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from keras_trainkit import tuning  # noqa: E402
from keras_trainkit.tuning import optuna_oracle  # noqa: E402
from tests.tuning._optuna_helpers import Synthetic  # noqa: E402

SCORE = keras_tuner.Objective("score", "max")
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _search(tmp_path, name="s", epochs=3, falling=False, **kwargs):
    kwargs.setdefault("objective", SCORE)
    kwargs.setdefault("max_trials", 4)
    tuner = tuning.OptunaSearch(Synthetic(epochs=epochs, falling=falling), directory=str(tmp_path),
                                project_name=name, **kwargs)
    tuner.search()
    return tuner


def test_values_come_from_the_study_and_conditional_ones_only_when_active(tmp_path):
    tuner = _search(tmp_path, sampler="random", seed=0, max_trials=6)
    study = tuner.study
    assert isinstance(study, optuna.Study)
    assert os.path.exists(os.path.join(tmp_path, "s", "optuna.db"))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6
    for frozen in study.trials:
        trial = tuner.oracle.get_trial(tuner.oracle.trial_id_of(frozen.number))
        values = trial.hyperparameters.values
        assert frozen.params == values  # same names and values: no transform needed here
        other = "sgd" if values["optimizer"] == "adam" else "adam"
        assert not [k for k in frozen.params if k.startswith(other + "_")]
        # epoch e's score is x * (e + 1): every epoch reached the study
        assert frozen.intermediate_values == pytest.approx(
            {e: values["x"] * (e + 1) for e in range(3)})
        assert frozen.value == pytest.approx(3 * values["x"])
    assert {t.hyperparameters.values["optimizer"] for t in tuner.oracle.trials.values()} == {
        "adam", "sgd"}
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.score == pytest.approx(study.best_value)


def test_a_seeded_search_is_reproducible(tmp_path):
    def values(name, seed):
        tuner = _search(tmp_path, name, epochs=1, sampler="tpe", seed=seed, max_trials=3)
        return [t.params for t in tuner.study.trials]

    assert values("a", 11) == values("b", 11)
    assert values("a2", 11) != values("c", 12)


def test_a_short_tpe_search_models_after_a_fifth_of_its_trials(tmp_path):
    """max_trials reaches the sampler: of 6 trials, 2 start-up trials shared with
    random search (same per-trial seeds), then TPE's own (Optuna's fixed 10 would
    make all 6 random)."""
    def values(sampler):
        tuner = _search(tmp_path, sampler, epochs=1, sampler=sampler, seed=5, max_trials=6)
        return [t.params for t in tuner.study.trials]

    tpe, random = values("tpe"), values("random")
    assert tpe[:2] == random[:2]
    assert all(t != r for t, r in zip(tpe[2:], random[2:]))


def test_an_optuna_pruner_prunes_and_both_records_say_so(tmp_path):
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    tuner = _search(tmp_path, sampler="random", seed=1, max_trials=8, pruner=pruner)
    pruned = [t for t in tuner.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "no trial below the median was pruned"
    for frozen in tuner.study.trials:
        trial_id = tuner.oracle.trial_id_of(frozen.number)
        record = tuner.oracle.get_trial(trial_id)
        assert record.status == "COMPLETED"
        if frozen.state == optuna.trial.TrialState.PRUNED:
            assert trial_id in tuner.oracle.pruned_trials
            assert "pruned at epoch" in record.message and "MedianPruner" in record.message
            assert len(frozen.intermediate_values) < 3  # stopped before its last epoch
            # pruned because it was below the median of the earlier trials at that epoch
            step = max(frozen.intermediate_values)
            earlier = [t.intermediate_values[step] for t in tuner.study.trials
                       if t.number < frozen.number and step in t.intermediate_values]
            assert frozen.intermediate_values[step] < np.median(earlier)
        else:
            assert trial_id not in tuner.oracle.pruned_trials


def test_patient_and_wilcoxon_pruners_are_accepted(tmp_path):
    # falling curves: no improvement after the first epoch, and with no wrapped pruner
    # PatientPruner then prunes every trial there
    patient = optuna.pruners.PatientPruner(None, patience=0)
    tuner = _search(tmp_path, "patient", sampler="random", seed=2, max_trials=3, pruner=patient,
                    falling=True)
    for frozen in tuner.study.trials:
        assert frozen.state == optuna.trial.TrialState.PRUNED
        assert sorted(frozen.intermediate_values) == [0, 1]
    wilcoxon = optuna.pruners.WilcoxonPruner(p_threshold=0.5, n_startup_steps=1)
    tuner = _search(tmp_path, "wilcoxon", sampler="random", seed=2, max_trials=3, pruner=wilcoxon)
    assert len(tuner.study.trials) == 3


@pytest.mark.parametrize("rule", ["median", "asha"])
def test_our_rules_prune_through_the_study(tmp_path, rule):
    pruner = (tuning.MedianPruner(startup_trials=1, warmup_epochs=0) if rule == "median"
              else tuning.ASHAPruner(min_epochs=1, reduction_factor=2))
    tuner = _search(tmp_path, rule, sampler="random", seed=3, max_trials=6, pruner=pruner)
    states = [t.state for t in tuner.study.trials]
    assert optuna.trial.TrialState.PRUNED in states
    for frozen in tuner.study.trials:
        trial_id = tuner.oracle.trial_id_of(frozen.number)
        pruned = frozen.state == optuna.trial.TrialState.PRUNED
        assert (trial_id in tuner.oracle.pruned_trials) == pruned
        if pruned:
            assert tuner.oracle.pruned_trials[trial_id]["rule"] == rule


def test_several_objectives_give_a_pareto_front_of_loadable_models(tmp_path):
    objectives = [SCORE, keras_tuner.Objective("num_params", "min")]
    tuner = _search(tmp_path, "pareto", objective=objectives, sampler="nsga2", seed=4,
                    max_trials=8, epochs=1)
    records = {t.trial_id: tuner.oracle.objective_values(t)
               for t in tuner.oracle.trials.values()}
    # the front, computed here from the KerasTuner records: not dominated by any other trial
    def dominated(a):
        return any(b[0] >= a[0] and b[1] <= a[1] and b != a for b in records.values())
    expected = sorted(k for k, v in records.items() if not dominated(v))
    front = tuner.pareto_front()
    assert sorted(t.trial_id for t in front) == expected
    widths = {t.trial_id: t.hyperparameters.values["width"] for t in front}
    for trial, model in zip(front, tuner.pareto_models()):
        assert model.count_params() == records[trial.trial_id][1]
        assert model.layers[0].units == widths[trial.trial_id]
    # the best trials: the front by score, then the rest (not KerasTuner's signed sum,
    # which the parameter count decides)
    best = tuner.oracle.get_best_trials(len(records))
    by_score = sorted(expected, key=lambda k: -records[k][0])
    assert [t.trial_id for t in best[:len(expected)]] == by_score
    assert sorted(t.trial_id for t in best) == sorted(records)
    assert tuner.get_best_models(1)[0].count_params() == records[by_score[0]][1]
    files = tuning.write_report(tuner, str(tmp_path / "report"))["files"]
    assert str(tmp_path / "report" / "pareto_front.png") in files
    with open(tmp_path / "report" / "best_hyperparameters.json") as handle:
        best_json = json.load(handle)
    assert best_json["trial_id"] == by_score[0] and best_json["objective"] == "score"
    assert best_json["objectives"] == pytest.approx(
        {"score": records[by_score[0]][0], "num_params": records[by_score[0]][1]})
    summary = (tmp_path / "report" / "summary.txt").read_text().splitlines()
    assert summary[0].split()[4:6] == ["score", "num_params"]
    assert [line.split()[1] for line in summary[1:1 + len(expected)]] == by_score
    # the report ranks every trial as get_best_trials does (the front, then the fronts left)
    assert [line.split()[1] for line in summary[1:1 + len(records)]] == [t.trial_id for t in best]
    with open(tmp_path / "report" / "pareto_front.json") as handle:
        assert sorted(entry["trial_id"] for entry in json.load(handle)) == expected
    with pytest.raises(ValueError, match="Argument `pruner` must be None with several objectives"):
        tuning.OptunaSearch(Synthetic(), objective=objectives, pruner="median",
                            directory=str(tmp_path), project_name="bad")


class _RisingCost(keras.callbacks.Callback):
    """Logs ``cost = 100 * (epoch + 1)`` and keeps every epoch's weights (in the class:
    KerasTuner deep-copies the callbacks of each execution)."""

    weights = []

    def on_epoch_end(self, epoch, logs=None):
        logs["cost"] = 100.0 * (epoch + 1)
        _RisingCost.weights.append([w.copy() for w in self.model.get_weights()])


def test_with_several_objectives_a_trial_keeps_its_first_objectives_best_epoch(tmp_path):
    """score = x * (epoch + 1) rises, cost falls behind: KerasTuner's signed sum
    (cost - score) would keep every trial's first epoch; the first objective's best
    is the last one, and its values and weights are the trial's."""
    _RisingCost.weights = []
    tuner = tuning.OptunaSearch(
        Synthetic(epochs=3), objective=[SCORE, keras_tuner.Objective("cost", "min")],
        max_trials=3, sampler="random", seed=2, directory=str(tmp_path), project_name="s")
    tuner.search(callbacks=[_RisingCost()])
    trials = [tuner.oracle.trials[trial_id] for trial_id in sorted(tuner.oracle.trials)]
    assert len(_RisingCost.weights) == 3 * len(trials) == 9
    for number, trial in enumerate(trials):
        x = trial.hyperparameters.values["x"]
        assert trial.best_step == 2
        assert tuner.oracle.objective_values(trial) == pytest.approx([3 * x, 300.0])
        assert tuner.study.trials[number].values == pytest.approx([3 * x, 300.0])
        last_epoch = _RisingCost.weights[3 * number + 2]
        for kept, expected in zip(tuner.load_model(trial).get_weights(), last_epoch):
            np.testing.assert_array_equal(kept, expected)


def test_a_rerun_continues_the_study_in_its_storage(tmp_path):
    first = _search(tmp_path, "again", sampler="tpe", seed=5, max_trials=3, epochs=1)
    numbers = [t.number for t in first.study.trials]
    second = _search(tmp_path, "again", sampler="tpe", seed=5, max_trials=5, epochs=1)
    assert [t.number for t in second.study.trials] == numbers + [3, 4]
    assert sorted(second.oracle.trials) == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("first, second", [(None, "journal"), ("journal", None)])
def test_a_search_resumed_on_another_storage_is_refused_untouched(tmp_path, first, second):
    """Before, the other storage's empty study handed out numbers 0, 1, ... again: the
    completed trials trained anew over their records (checkpoints set aside as damaged)."""
    done = _search(tmp_path, "moved", storage=first, sampler="random", seed=1, max_trials=2, epochs=1)
    records = {t: done.oracle.trials[t].get_state() for t in done.oracle.trials}
    folder = tmp_path / "moved"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "optuna" not in p.name)
    with pytest.raises(ValueError, match=r"Argument `storage` must be the storage this search ran on: .* "
                                         r"recorded 2 trial\(s\), and the study 'moved' in this storage lacks 2 "
                                         r"of them \(numbers 0, 1\)"):
        _search(tmp_path, "moved", storage=second, sampler="random", seed=2, max_trials=3, epochs=1)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "optuna" not in p.name) == files
    again = _search(tmp_path, "moved", storage=first, sampler="random", seed=1, max_trials=2, epochs=1)
    assert {t: again.oracle.trials[t].get_state() for t in again.oracle.trials} == records


def test_a_trial_started_during_a_reload_is_read(tmp_path):
    """KerasTuner's reload reads the trial files, then oracle.json; another worker of
    the search may start a trial in between (its record, then oracle.json). The
    oracle then reads the record that oracle.json names instead of failing with
    KeyError ("Error reloading `Oracle`", which 25 of 984 reloads beside a running
    search hit here)."""
    def tuner():
        return tuning.OptunaSearch(Synthetic(epochs=1), objective=SCORE, max_trials=3,
                                   heartbeat_interval=None, directory=str(tmp_path),
                                   project_name="s")

    _search(tmp_path, max_trials=2, epochs=1, heartbeat_interval=None)
    started = tuner().oracle.create_trial("tuner1")  # the other worker
    state = json.loads((tmp_path / "s" / "oracle.json").read_text())
    assert state["ongoing_trials"] == {"tuner1": started.trial_id}
    joining = tuner().oracle
    del joining.trials[started.trial_id]  # as if its files were read before it started
    joining.set_state(state)
    assert joining.ongoing_trials["tuner1"].hyperparameters.values == (
        started.hyperparameters.values)
    assert sorted(joining.trials) == ["0", "1", "2"]


class _NoHeartbeatThread:
    """A heartbeat thread that never beats: a worker killed before its first beat."""

    def __init__(self, storage, trial_id):
        pass

    def stop(self):
        pass


def test_a_worker_killed_before_its_first_thread_beat_has_its_trial_retried(tmp_path,
                                                                             monkeypatch):
    """A database storage (Optuna's ``RDBStorage``) fails only running trials that beat
    at least once; the oracle beats when it asks, so the trial of a worker killed before
    its heartbeat thread's first beat is failed and run again by another worker (before,
    it stayed running for good and the others waited on it)."""
    monkeypatch.setattr(optuna_oracle, "Heartbeat", _NoHeartbeatThread)
    url = f"sqlite:///{tmp_path}/shared.db"

    def worker(name):
        return tuning.OptunaSearch(Synthetic(epochs=1), objective=SCORE, max_trials=3,
                                   storage=url, heartbeat_interval=1, grace_period=2,
                                   directory=str(tmp_path / name), project_name="s").oracle

    dead = worker("a").create_trial("a")
    time.sleep(3.5)  # past the grace period (SQLite keeps the beat in whole seconds)
    retry = worker("b").create_trial("b")
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL,
                                               optuna.trial.TrialState.RUNNING]
    assert study.trials[1].system_attrs["failed_trial"] == 0
    assert retry.hyperparameters.values == dead.hyperparameters.values


def test_journal_storage(tmp_path):
    tuner = _search(tmp_path, "journal", storage="journal", sampler="random", seed=0,
                    max_trials=3, epochs=1)
    assert os.path.exists(os.path.join(tmp_path, "journal", "optuna.journal"))
    assert len(tuner.study.trials) == 3 and tuner.storage_url is None
    # each trial beat (our journal heartbeat, HeartbeatJournalStorage) while it ran
    assert all("trainkit_heartbeat" in t.system_attrs for t in tuner.study.trials)


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="Argument `storage` must be None"):
        _search(tmp_path, "bad", storage=3)
    with pytest.raises(ValueError, match="Argument `max_trials`"):
        tuning.OptunaSearch(Synthetic(), objective=SCORE, max_trials=0, directory=str(tmp_path))


@pytest.mark.slow
def test_isolated_trials_report_their_epochs_to_the_study(tmp_path):
    tuner = tuning.OptunaSearch(Synthetic(epochs=2), objective=SCORE, max_trials=1, seed=0,
                                sampler="random", isolate_trials=True, directory=str(tmp_path),
                                project_name="isolated")
    tuner.search()
    for frozen in tuner.study.trials:
        assert frozen.state == optuna.trial.TrialState.COMPLETE
        assert frozen.intermediate_values == pytest.approx(
            {0: frozen.params["x"], 1: 2 * frozen.params["x"]})
    assert tuner.get_best_models(1)[0].count_params() > 0


@pytest.mark.slow
def test_isolated_trials_of_a_lazily_registered_branch_load_in_the_search_process(tmp_path):
    """A trial whose process registered ``scale`` (the non-default branch) left it out of the
    search process's record; building the model there asked the finished Optuna trial for it:
    UpdateFinishedTrialError from get_best_models. It takes the default the trial's process
    gave it (documented for isolated trials)."""
    from tests.tuning._optuna_helpers import LazyBranch

    tuner = tuning.OptunaSearch(LazyBranch(epochs=1), objective=SCORE, max_trials=2, seed=0,
                                sampler="random", isolate_trials=True, directory=str(tmp_path),
                                project_name="lazy")
    tuner.search()
    scaled = [t for t in tuner.oracle.trials.values() if t.hyperparameters.values["branch"] == "scaled"]
    assert scaled, "the seed must draw the non-default branch"
    for trial in scaled:
        model = tuner.load_model(trial)
        assert model.count_params() > 0
        assert "scale" not in tuner.study.trials[int(trial.trial_id)].params
    assert len(tuner.get_best_models(2)) == 2


def test_time_budget_and_report(tmp_path):
    tuner = tuning.OptunaSearch(Synthetic(epochs=5, sleep=0.3), objective=SCORE, max_trials=4,
                                time_budget=0.5, directory=str(tmp_path), project_name="budget")
    tuner.search()
    assert len(tuner.study.trials) == 1  # no trial started after the budget
    frozen = tuner.study.trials[0]
    assert frozen.state == optuna.trial.TrialState.COMPLETE and len(frozen.intermediate_values) < 5
    summary = tuning.write_report(tuner, str(tmp_path / "report"))["summary"]
    assert "1 trials, 0 pruned, 0 failed" in summary


def test_one_name_in_two_scopes_optuna_cannot_share_is_refused_before_any_trial(tmp_path):
    """KerasTuner registers every branch of a hypermodel's conditional scopes up front; two
    `units` Optuna cannot hold in one study (other choices) are refused there, with both
    scopes named, instead of failing the search at the other branch's first trial."""

    def build(hp):
        kind = hp.Choice("kind", ["small", "big"])
        units = None
        with hp.conditional_scope("kind", "small"):
            if kind == "small":
                units = hp.Choice("units", [8, 16])
        with hp.conditional_scope("kind", "big"):
            if kind == "big":
                units = hp.Choice("units", [64, 128])
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(units), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        return model

    tuner = tuning.OptunaSearch(build, sampler="random", objective="val_loss", max_trials=4, seed=3,
                                directory=str(tmp_path), project_name="scopes")
    x = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match=r"registers the hyperparameter 'units' twice, when kind in "
                                         r"\['small'\] .* and when kind in \['big'\]"):
        tuner.search(x, x[:, :1], validation_data=(x, x[:, :1]), epochs=1, verbose=0)
    assert len(tuner.study.trials) == 0 and len(tuner.oracle.trials) == 0
