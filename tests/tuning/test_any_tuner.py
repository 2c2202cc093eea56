"""Our features on every KerasTuner tuner: Hyperband, GridSearch, a user's own Tuner;
the isolated path honours executions_per_trial and KerasTuner's build checks."""

import time

import keras
import keras_tuner
import numpy as np
import pytest

from keras_trainkit import datasets, tuning
from keras_trainkit.tuning.trial_plan import EpochReporter


@pytest.fixture(scope="module")
def data():
    (x, y), _ = datasets.load_mnist1d()
    return (x[:256], y[:256]), (x[3000:3128], y[3000:3128])


def _recipe(epochs=2, widths=(16, 32)):
    return tuning.RecipeHyperModel(
        (40,), 10, architecture=tuning.MLPSpace(depth=(1, 1), widths=widths),
        training=tuning.TrainingSpace(batch_sizes=(128,), epochs=epochs, clipping=False))


class SlowEpochs(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(0.3)


def _epochs(trial):
    return [obs.step for obs in trial.metrics.get_history("val_accuracy")]


@pytest.mark.parametrize("make", [
    lambda d, **kw: tuning.RandomSearch(_recipe(5), max_trials=3, directory=d, **kw),
    lambda d, **kw: tuning.Hyperband(_recipe(5), max_epochs=5, factor=3, directory=d, **kw),
    lambda d, **kw: tuning.trainkit_tuner(keras_tuner.RandomSearch)(
        _recipe(5), objective="val_accuracy", max_trials=3, directory=d, **kw),
], ids=["ours", "hyperband", "keras_tuner_random_search"])
def test_time_budget_on_every_tuner(make, data, tmp_path):
    """No trial starts after the budget; the running one stops at its epoch end."""
    tuner = make(str(tmp_path), seed=1, time_budget=0.5)
    (x, y), validation = data
    tuner.search(x, y, validation_data=validation, callbacks=[SlowEpochs()], verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 1
    assert trials[0].status == "COMPLETED" and len(_epochs(trials[0])) < 5


def test_hyperband_starts_from_the_defaults_and_reports_its_rounds(data, tmp_path, recwarn):
    hypermodel = _recipe(2)
    tuner = tuning.Hyperband(hypermodel, max_epochs=2, factor=2, seed=0,
                             start_from_defaults=True, directory=str(tmp_path))
    (x, y), validation = data
    tuner.search(x, y, validation_data=validation, verbose=0)
    assert not [w for w in recwarn if "Skipping variable loading" in str(w.message)]
    first = tuner.oracle.get_trial(tuner.oracle.start_order[0]).hyperparameters.values
    assert first["width"] == 16 and first["optimizer"] == "adamw"  # the spaces' defaults
    rounds = [t for t in tuner.oracle.trials.values() if "tuner/trial_id" in t.hyperparameters]
    assert rounds, "no trial continued an earlier round"
    for trial in rounds:  # a later round reports the epochs it ran, after its parent's
        assert _epochs(trial) == list(range(trial.hyperparameters["tuner/initial_epoch"],
                                            trial.hyperparameters["tuner/epochs"]))
    with pytest.raises(ValueError, match="takes no pruner"):
        tuning.Hyperband(hypermodel, max_epochs=2, pruner="median", directory=str(tmp_path),
                         project_name="other")


def test_grid_search_prunes(data, tmp_path):
    recipe = tuning.RecipeHyperModel(
        (40,), 10, architecture=tuning.MLPSpace(fixed={"depth": 1, "activation": "relu",
                                                       "batch_norm": False}, widths=(4, 8, 64)),
        optimizer=tuning.OptimizerSpace(families=["adam"], fixed={
            "learning_rate": 3e-3, "beta_1": 0.9, "beta_2": 0.999}),
        schedule=tuning.ScheduleSpace(families=["constant"]),
        training=tuning.TrainingSpace(batch_sizes=(128,), epochs=3, clipping=False,
                                      label_smoothing=None),
        regularization=tuning.RegularizationSpace(l2=False, fixed={"dropout": 0.0}),
        initializer=tuning.InitializerSpace(choices=["he_normal"]))
    tuner = tuning.GridSearch(recipe, pruner=tuning.MedianPruner(startup_trials=1,
                                                                 warmup_epochs=0),
                              directory=str(tmp_path))
    (x, y), validation = data
    tuner.search(x, y, validation_data=validation, verbose=0)
    assert sorted(t.hyperparameters["width"] for t in tuner.oracle.trials.values()) == [4, 8, 64]
    assert tuner.oracle.pruned_trials


class CountingOracle(keras_tuner.oracles.RandomSearchOracle):
    """A user's own oracle: stops every trial after its second epoch."""

    def update_trial(self, trial_id, metrics, step=0):
        trial = super().update_trial(trial_id, metrics, step=step)
        if step >= 1:
            trial.status = "STOPPED"
        return trial


class OwnTuner(tuning.TrainkitTunerMixin, keras_tuner.Tuner):
    """A user's own Tuner subclass with our features."""


def test_users_own_tuner_and_oracle(data, tmp_path):
    oracle = CountingOracle(objective="val_accuracy", max_trials=2, seed=3)
    tuner = OwnTuner(oracle=oracle, hypermodel=_recipe(4), directory=str(tmp_path))
    (x, y), validation = data
    tuner.search(x, y, validation_data=validation, verbose=0)
    assert [_epochs(t) for t in oracle.trials.values()] == [[0, 1], [0, 1]]
    assert all(t.status == "COMPLETED" for t in oracle.trials.values())


@pytest.mark.slow
def test_isolated_trials_honour_executions_and_build_checks(data, tmp_path):
    (x, y), validation = data
    tuner = tuning.RandomSearch(_recipe(2), max_trials=1, seed=0, isolate_trials=True,
                                executions_per_trial=2, directory=str(tmp_path),
                                project_name="executions")
    tuner.search(x, y, validation_data=validation, verbose=0)
    (trial,) = tuner.oracle.trials.values()
    history = trial.metrics.get_history("val_accuracy")
    assert [obs.step for obs in history] == [0, 1]
    assert all(len(obs.value) == 2 for obs in history)  # one value per execution
    assert trial.score == pytest.approx(max(np.mean(obs.value) for obs in history))

    oversized = tuning.RandomSearch(_recipe(2), max_trials=1, seed=0, isolate_trials=True,
                                    max_model_size=10, directory=str(tmp_path),
                                    project_name="oversized")
    with pytest.raises(RuntimeError, match="Oversized model"):
        oversized.search(x, y, validation_data=validation, verbose=0)


@pytest.mark.slow
def test_isolated_hyperband_continues_earlier_rounds(data, tmp_path):
    tuner = tuning.Hyperband(_recipe(2), max_epochs=2, factor=2, seed=0, isolate_trials=True,
                             directory=str(tmp_path))
    (x, y), validation = data
    tuner.search(x, y, validation_data=validation, verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert trials and all(t.status == "COMPLETED" for t in trials)
    assert any("tuner/trial_id" in t.hyperparameters for t in trials)
    assert tuner.get_best_models(1)[0].output_shape == (None, 10)


def test_isolation_refuses_what_cannot_cross_a_process(tmp_path):
    import tensorflow as tf

    with pytest.raises(ValueError, match="distribution_strategy"):
        tuning.RandomSearch(_recipe(), isolate_trials=True,
                            distribution_strategy=tf.distribute.get_strategy(),
                            directory=str(tmp_path))
    tuner = tuning.RandomSearch(lambda hp: None, max_trials=1, isolate_trials=True,
                                directory=str(tmp_path), project_name="lambda")
    with pytest.raises(keras_tuner.errors.FatalValueError, match="pickling failed"):
        tuner.search(np.zeros((4, 40)), np.zeros(4))


def test_trainkit_tuner_makes_one_class_per_tuner():
    made = tuning.trainkit_tuner(keras_tuner.Hyperband)
    assert made is tuning.trainkit_tuner(keras_tuner.Hyperband)
    assert issubclass(made, keras_tuner.Hyperband)
    assert tuning.trainkit_tuner(tuning.RandomSearch) is tuning.RandomSearch
    with pytest.raises(TypeError, match="tuner_class"):
        tuning.trainkit_tuner(keras_tuner.oracles.RandomSearchOracle)


def test_loaded_models_give_no_optimizer_warning(data, tmp_path, recwarn):
    (x, y), validation = data
    tuner = tuning.RandomSearch(_recipe(1), max_trials=2, seed=0, directory=str(tmp_path))
    tuner.search(x, y, validation_data=validation, verbose=0)
    recwarn.clear()
    models = tuner.get_best_models(2)
    tuning.ensemble_best_models(tuner, 2)
    assert not [w for w in recwarn if "Skipping variable loading" in str(w.message)]
    best = tuner.oracle.get_best_trials(1)[0]
    x_val, y_val = validation
    accuracy = models[0].evaluate(x_val, keras.utils.to_categorical(y_val, 10), verbose=0,
                                  return_dict=True)["accuracy"]
    assert accuracy == pytest.approx(best.score, abs=1e-6)


def test_reporter_answers_with_a_status_or_a_trial():
    class Answer:
        status = "STOPPED"

    for answer in ("STOPPED", Answer()):
        class Oracle:
            def update_trial(self, trial_id, metrics, step=0, answer=answer):
                return answer

        reporter = EpochReporter(Oracle(), "0", keras_tuner.Objective("val_loss", "min"))
        reporter.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
        reporter.on_epoch_end(0, {"val_loss": 1.0})
        assert reporter.reported and reporter.stopped == "pruned"
        assert reporter.model.stop_training


class OracleClassSearch(tuning.TrainkitTunerMixin, keras_tuner.Tuner):
    """How a new search method (an Optuna-backed one, say) plugs in: name its oracle."""

    oracle_class = tuning.PruningRandomSearchOracle
    default_objective = "val_loss"


def test_a_new_tuner_builds_its_oracle_from_the_arguments(tmp_path):
    tuner = OracleClassSearch(_recipe(), max_trials=4, pruner="asha", seed=2,
                              max_model_size=10**6, executions_per_trial=2,
                              directory=str(tmp_path), time_budget=60)
    assert isinstance(tuner.oracle, tuning.PruningRandomSearchOracle)
    assert (tuner.oracle.max_trials, tuner.oracle.seed) == (4, 2)
    assert isinstance(tuner.oracle.pruner, tuning.ASHAPruner)
    assert (tuner.max_model_size, tuner.executions_per_trial) == (10**6, 2)
    assert tuner.oracle.objective.name == "val_accuracy"  # the recipe's own
    plain = OracleClassSearch(lambda hp: keras.Sequential(), directory=str(tmp_path),
                              project_name="plain")
    assert plain.oracle.objective.name == "val_loss"  # the class's default
