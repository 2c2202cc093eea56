"""OptunaSearch in KerasTuner's corners: ``tune_new_entries=False``, the defaults trial
of ``start_from_defaults`` with hyperparameters registered in ``HyperModel.fit``,
``executions_per_trial > 1``, a trial KerasTuner retries (``max_retries_per_trial``),
and a multi-objective search resumed with a larger ``max_trials`` (its trial ids padded
wider). Tiny models, one or two epochs."""

import warnings

import keras
import keras_tuner
import pytest

optuna = pytest.importorskip("optuna")

from keras_trainkit import tuning  # noqa: E402
from tests.tuning._optuna_helpers import X, Y, Synthetic  # noqa: E402

SCORE = keras_tuner.Objective("score", "max")
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def test_without_tune_new_entries_unlisted_hyperparameters_keep_their_defaults(tmp_path):
    """As KerasTuner's oracles: only the hyperparameters given are tuned; those the model
    registers besides take their defaults (``Synthetic``'s: x=0, adam, adam_lr=1e-3)."""
    given = keras_tuner.HyperParameters()
    given.Choice("width", [1, 4, 16])
    tuner = tuning.OptunaSearch(Synthetic(epochs=1), objective=SCORE, max_trials=3,
                                sampler="random", seed=0, hyperparameters=given,
                                tune_new_entries=False, directory=str(tmp_path),
                                project_name="fixed")
    tuner.search()
    defaults = {"x": 0.0, "optimizer": "adam", "adam_lr": 1e-3}
    for trial in tuner.oracle.trials.values():
        values = trial.hyperparameters.values
        assert {k: values[k] for k in defaults} == defaults
        assert values["width"] in (1, 4, 16)
    assert [sorted(t.params) for t in tuner.study.trials] == [["width"]] * 3


class _FitHyperModel(keras_tuner.HyperModel):
    """``units`` registered in ``build``; ``batch_size`` and ``decay`` in ``fit`` (the
    KerasTuner idiom for a batch size), with defaults other than their first values."""

    def build(self, hp):
        units = hp.Int("units", 1, 8, default=4)
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(units),
                                  keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        return model

    def fit(self, hp, model, *args, **kwargs):
        batch_size = hp.Choice("batch_size", [2, 4, 8, 16], default=16)
        hp.Float("decay", 0.0, 1.0, default=0.5)
        for key in ("epochs", "verbose", "batch_size"):
            kwargs.pop(key, None)
        return model.fit(X, Y, epochs=1, batch_size=batch_size, verbose=0, **kwargs)


def test_the_defaults_trial_gives_defaults_to_hyperparameters_registered_in_fit(tmp_path):
    tuner = tuning.OptunaSearch(_FitHyperModel(), objective="loss", max_trials=2,
                                sampler="random", seed=1, start_from_defaults=True,
                                directory=str(tmp_path), project_name="defaults")
    tuner.search()
    defaults = {"units": 4, "batch_size": 16, "decay": 0.5}
    first = tuner.oracle.get_trial(tuner.oracle.trial_id_of(0))
    assert first.hyperparameters.values == defaults
    assert tuner.study.trials[0].params == defaults  # the study's record says the same
    second = tuner.study.trials[1]  # the next trial is asked as usual
    assert set(second.params) == set(defaults)
    assert second.distributions["decay"] == optuna.distributions.FloatDistribution(0.0, 1.0)


class _ExecutionScore(keras.callbacks.Callback):
    """``score = epoch + offset``: offset 0 in a trial's first execution, 10 in its second."""

    def __init__(self, offset):
        super().__init__()
        self.offset = offset

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = float(epoch + self.offset)


class _TwoExecutions(keras_tuner.HyperModel):
    def __init__(self):
        super().__init__()
        self.runs = 0

    def build(self, hp):
        hp.Int("u", 1, 4)
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        return model

    def fit(self, hp, model, *args, **kwargs):
        offset = 10.0 * (self.runs % 2)
        self.runs += 1
        kwargs["callbacks"] = [_ExecutionScore(offset), *kwargs.get("callbacks", [])]
        kwargs.pop("epochs", None)
        kwargs["verbose"] = 0
        return model.fit(X, Y, epochs=2, **kwargs)


class _Watching(optuna.pruners.BasePruner):
    """Prunes nothing; keeps the intermediate values each call saw."""

    def __init__(self):
        self.seen = []

    def prune(self, study, trial):
        self.seen.append(dict(trial.intermediate_values))
        return False


@pytest.mark.parametrize("storage", [None, "journal"])
def test_each_epochs_value_is_the_mean_over_the_executions(tmp_path, storage):
    """Executions 1 and 2 score (0, 1) and (10, 11): the study's epochs are the means
    (5, 6), as KerasTuner's record. The pruner is asked during the first execution
    only, as our other oracles' rules are: in the second, the study held {0: 5, 1: 1},
    a mix of the means so far and the first execution's last epoch, which Optuna's
    pruners would judge (they look at the last step)."""
    pruner = _Watching()
    tuner = tuning.OptunaSearch(_TwoExecutions(), objective=SCORE, max_trials=1,
                                sampler="random", seed=0, executions_per_trial=2,
                                pruner=pruner, storage=storage, directory=str(tmp_path),
                                project_name="executions")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuner.search()
    frozen = tuner.study.trials[0]
    assert frozen.intermediate_values == {0: 5.0, 1: 6.0}
    assert not [w for w in caught if "already reported" in str(w.message)]
    assert pruner.seen == [{0: 0.0}, {0: 0.0, 1: 1.0}]
    assert frozen.value == 6.0


class _FailsOnce(keras_tuner.HyperModel):
    """The first trial's first ``fit`` raises; every other one trains two epochs."""

    def __init__(self):
        super().__init__()
        self.fitted = []

    def build(self, hp):
        hp.Int("units", 1, 100)
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        return model

    def fit(self, hp, model, *args, **kwargs):
        self.fitted.append(hp.values["units"])
        if len(self.fitted) == 1:
            raise RuntimeError("this trial fails once")
        return model.fit(X, Y, epochs=2, verbose=0, callbacks=kwargs.get("callbacks"))


def test_a_trial_keras_tuner_retries_runs_again_as_the_same_optuna_trial(tmp_path):
    """KerasTuner hands a failed trial out again, same id and values; the study's trial of
    that number takes its epochs and its end: no trial is lost or added on either side."""
    hypermodel = _FailsOnce()
    tuner = tuning.OptunaSearch(hypermodel, objective="loss", max_trials=2, sampler="random",
                                seed=3, max_retries_per_trial=1, directory=str(tmp_path),
                                project_name="retry")
    tuner.search()
    failed, retried, second = hypermodel.fitted
    assert retried == failed
    assert {i: (t.status, t.hyperparameters.values["units"])
            for i, t in tuner.oracle.trials.items()} == {"0": ("COMPLETED", failed),
                                                         "1": ("COMPLETED", second)}
    assert [(t.number, t.state.name, t.params) for t in tuner.study.trials] == [
        (0, "COMPLETE", {"units": failed}), (1, "COMPLETE", {"units": second})]
    first = tuner.study.trials[0]
    assert sorted(first.intermediate_values) == [0, 1]
    assert first.value == first.intermediate_values[1] == tuner.oracle.trials["0"].score


def test_the_pareto_front_keeps_its_trials_after_a_resume_with_more_trials(tmp_path):
    """The first run's ids have one digit ("3"), the resumed run's two ("09"); the
    front is the study's ``best_trials``, whichever run made them."""
    def search(max_trials):
        tuner = tuning.OptunaSearch(
            Synthetic(epochs=1), objective=[SCORE, keras_tuner.Objective("num_params", "min")],
            sampler="random", seed=1, max_trials=max_trials, directory=str(tmp_path),
            project_name="front")
        tuner.search()
        return tuner

    search(4)
    tuner = search(10)
    assert sorted(tuner.oracle.trials, key=int)[3:5] == ["3", "04"]
    expected = sorted(t.number for t in tuner.study.best_trials)
    assert min(expected) < 4, "the test needs a first-run trial on the front"
    front = tuner.pareto_front()
    assert sorted(int(t.trial_id) for t in front) == expected
    assert len(tuner.pareto_models()) == len(expected)
