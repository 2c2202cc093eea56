"""A ``HyperModel.fit`` that returns a float or a dict is scored by that value, as
KerasTuner scores it, though our tuners also sent every epoch's ``val_loss`` to the
oracle (and pruned on it).

Every expected score is the trial score of ``keras_tuner.RandomSearch`` run side by
side on the same hypermodel. Training is seeded and unshuffled, so each epoch's
``val_loss`` and the final evaluation are the same under every tuner.
"""

import keras
import keras_tuner
import numpy as np
import optuna
import pytest

from keras_trainkit import tuning

X = np.linspace(-1.0, 1.0, 16, dtype="float32").reshape(-1, 1)
Y = 2.0 * X + 0.5
COMPLETE = optuna.trial.TrialState.COMPLETE


class Returning(keras_tuner.HyperModel):
    """Trains two epochs with ``model.fit`` (``val_loss`` in every epoch's logs), then
    returns what the trial's kind says, worse than every epoch: ``"dict"``,
    ``{"val_loss": final evaluation + 100, ...}``; ``"float"``, that value as a float;
    ``"mixed"``, its History in the first execution, the float (plus 1) in the second;
    ``"multi"``, a dict for two objectives.
    The n-th trial of a search (by its ``draw``) is of the n-th kind of ``kinds``."""

    def __init__(self, kinds):
        super().__init__()
        self.kinds = list(kinds)
        self.kind_of = {}  # draw -> kind
        self.executions = {}  # draw -> executions so far

    def build(self, hp):
        draw = hp.Int("draw", 0, 10**6)
        self.kind_of.setdefault(draw, self.kinds[len(self.kind_of) % len(self.kinds)])
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.05), "mse", run_eagerly=True)
        return model

    def fit(self, hp, model, *args, **kwargs):
        history = model.fit(*args, epochs=2, batch_size=16, shuffle=False, **kwargs)
        kind = self.kind_of[hp["draw"]]
        execution = self.executions[hp["draw"]] = self.executions.get(hp["draw"], -1) + 1
        final = float(model.evaluate(X, Y, verbose=0)) + 100.0 + execution
        if kind == "dict":
            return {"val_loss": final, "final_loss": final - 100.0}
        if kind == "multi":  # objectives val_loss and loss: KerasTuner wants its sum too
            return {"multi_objective": 2 * final + 100.0, "val_loss": final,
                    "loss": final + 100.0}
        if kind == "mixed" and execution == 0:
            return history
        return final


def _search(tuner):
    tuner.search(X, Y, validation_data=(X, Y), verbose=0)
    return tuner


def _keras_tuner_scores(directory, kinds, **kwargs):
    """KerasTuner's own trial score for each kind."""
    hypermodel = Returning(kinds)
    tuner = _search(keras_tuner.RandomSearch(
        hypermodel, objective="val_loss", max_trials=len(kinds), directory=directory,
        project_name="keras_tuner", **kwargs))
    scores = {hypermodel.kind_of[t.hyperparameters["draw"]]: t.score
              for t in tuner.oracle.trials.values()}
    assert sorted(scores) == sorted(kinds)
    return scores


@pytest.fixture(scope="module")
def keras_tuner_scores(tmp_path_factory):
    return _keras_tuner_scores(tmp_path_factory.mktemp("kt"), ["dict", "float"])


def _ours(kind, directory, kinds, **kwargs):
    hypermodel = Returning(kinds)
    common = {"objective": "val_loss", "max_trials": len(kinds), "directory": directory,
              "project_name": "ours", **kwargs}
    if kind == "RandomSearch":
        return tuning.RandomSearch(hypermodel, **common)
    if kind == "trainkit_tuner":
        return tuning.trainkit_tuner(keras_tuner.RandomSearch)(hypermodel, **common)
    return tuning.OptunaSearch(hypermodel, sampler="random", seed=0, storage="journal",
                               **common)


def _check_scores(tuner, expected):
    """Every trial's score, the best trial's, and OptunaSearch's study values are
    KerasTuner's for the same kind of trial."""
    kind_of = tuner.hypermodel.kind_of
    trials = list(tuner.oracle.trials.values())
    assert sorted(kind_of[t.hyperparameters["draw"]] for t in trials) == sorted(expected)
    for trial in trials:
        assert trial.score == pytest.approx(expected[kind_of[trial.hyperparameters["draw"]]],
                                            rel=1e-6)
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.score == pytest.approx(min(expected.values()), rel=1e-6)
    if isinstance(tuner, tuning.OptunaSearch):
        pruned = set(tuner.oracle.pruned_trials)
        values = [(kind_of[t.params["draw"]], t.value) for t in tuner.study.trials
                  if t.state == COMPLETE]
        assert len(values) == len(trials) - len(pruned)
        for kind, value in values:
            assert value == pytest.approx(expected[kind], rel=1e-6)


class PruneAtLastEpoch(tuning.Pruner):
    """Prunes a trial at epoch 1, its last, once another trial has reached it (so the
    pruned trial trained as long as KerasTuner's)."""

    name = "last-epoch"

    def decide(self, step, value, others):
        return "another trial reached epoch 1" if step == 1 and others else None


@pytest.mark.parametrize("kind,pruner", [
    ("trainkit_tuner", None),
    ("RandomSearch", PruneAtLastEpoch()),
    ("OptunaSearch", PruneAtLastEpoch()),
    ("OptunaSearch", optuna.pruners.ThresholdPruner(upper=0.0, n_warmup_steps=1)),
], ids=["trainkit_tuner", "RandomSearch-rule", "OptunaSearch-rule", "OptunaSearch-optuna-pruner"])
def test_a_returned_float_or_dict_is_the_score(kind, pruner, keras_tuner_scores, tmp_path):
    kwargs = {} if pruner is None else {"pruner": pruner}
    tuner = _search(_ours(kind, tmp_path, ["dict", "float"], **kwargs))
    # Every epoch reached the oracle (better than what fit returned), and pruning ...
    for trial in tuner.oracle.trials.values():
        epochs = trial.metrics.get_history("val_loss")
        assert [obs.step for obs in epochs] == [0, 1]
        assert max(np.mean(obs.value) for obs in epochs) < 100.0
    if pruner is not None:
        assert [info["epoch"] for info in tuner.oracle.pruned_trials.values()] in ([1], [1, 1])
    if isinstance(tuner, tuning.OptunaSearch):  # ... the study's, no returned value among them
        assert [sorted(t.intermediate_values) for t in tuner.study.trials] == [[0, 1], [0, 1]]
    # ... but what fit returned scored each trial, as KerasTuner's.
    _check_scores(tuner, keras_tuner_scores)


def test_executions_average_as_keras_tuner(tmp_path):
    """Two executions, one returning its History (its best epoch), one a float:
    KerasTuner averages the two."""
    expected = _keras_tuner_scores(tmp_path, ["mixed"], executions_per_trial=2)
    tuner = _search(_ours("OptunaSearch", tmp_path, ["mixed"], executions_per_trial=2))
    _check_scores(tuner, expected)


def test_several_objectives_take_the_returned_values(tmp_path):
    """With two objectives the study's values are the returned ones, as KerasTuner's
    record of them, and the score is the returned sum."""
    objectives = [keras_tuner.Objective("val_loss", "min"), keras_tuner.Objective("loss", "min")]
    hypermodel = Returning(["multi"])
    keras_tuner_trial = _search(keras_tuner.RandomSearch(
        hypermodel, objective=objectives, max_trials=1, directory=tmp_path,
        project_name="keras_tuner")).oracle.get_best_trials(1)[0]
    expected = [keras_tuner_trial.metrics.get_best_value(o.name) for o in objectives]
    tuner = _search(_ours("OptunaSearch", tmp_path, ["multi"], objective=objectives))
    trial = tuner.oracle.get_best_trials(1)[0]
    assert trial.score == pytest.approx(keras_tuner_trial.score, rel=1e-6)
    assert [obs.step for obs in trial.metrics.get_history("val_loss")] == [0, 1]
    assert tuner.study.trials[0].values == pytest.approx(expected, rel=1e-6)
