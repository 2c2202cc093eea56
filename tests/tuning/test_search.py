"""Real KerasTuner searches with the recipe HyperModel on a small MNIST-1D subset."""

import keras_tuner
import numpy as np
import pytest

from keras_trainkit import datasets, tuning


@pytest.fixture(scope="module")
def data():
    (x, y), _ = datasets.load_mnist1d()
    return (x[:600], y[:600]), (x[3000:3300], y[3000:3300])


def _small_recipe(epochs=2):
    return tuning.RecipeHyperModel(
        (40,), 10, architecture=tuning.MLPSpace(depth=(1, 2), widths=(32, 64)),
        training=tuning.TrainingSpace(batch_sizes=(64, 128), epochs=epochs))


def _grid_recipe():
    fixed = dict(fixed={"learning_rate": 3e-3, "beta_1": 0.9, "beta_2": 0.999, "weight_decay": 1e-4})
    return tuning.RecipeHyperModel(
        (40,), 10,
        architecture=tuning.MLPSpace(fixed={"depth": 1, "activation": "relu", "batch_norm": False},
                                     widths=(32, 64)),
        optimizer=tuning.OptimizerSpace(families=["adamw"], **fixed),
        schedule=tuning.ScheduleSpace(families=["constant"]),
        training=tuning.TrainingSpace(batch_sizes=(128,), epochs=1, clipping=False,
                                      label_smoothing=None),
        regularization=tuning.RegularizationSpace(l2=False, fixed={"dropout": 0.0}),
        initializer=tuning.InitializerSpace(choices=["he_normal"]))


@pytest.mark.parametrize("make_tuner", [
    lambda hm, d: keras_tuner.RandomSearch(hm, objective="val_accuracy", max_trials=2, seed=0,
                                           directory=d, project_name="rs"),
    lambda hm, d: keras_tuner.BayesianOptimization(hm, objective="val_accuracy", max_trials=2,
                                                   seed=0, directory=d, project_name="bo"),
    lambda hm, d: keras_tuner.Hyperband(hm, objective="val_accuracy", max_epochs=2, factor=2,
                                        hyperband_iterations=1, seed=0, directory=d,
                                        project_name="hb"),
], ids=["random", "bayesian", "hyperband"])
def test_recipe_with_keras_tuner_tuners(make_tuner, data, tmp_path):
    (x, y), validation = data
    tuner = make_tuner(_small_recipe(), str(tmp_path))
    tuner.search(x, y, validation_data=validation, verbose=0)
    trials = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    assert trials and all(np.isfinite(t.score) for t in trials)
    best = tuner.get_best_models(1)[0]
    assert best.predict(validation[0][:4], verbose=0).shape == (4, 10)


def test_recipe_with_grid_search(data, tmp_path):
    (x, y), validation = data
    tuner = keras_tuner.GridSearch(_grid_recipe(), objective="val_accuracy",
                                   directory=str(tmp_path), project_name="grid")
    tuner.search(x, y, validation_data=validation, verbose=0)
    widths = sorted(t.hyperparameters.get("width") for t in tuner.oracle.trials.values())
    assert widths == [32, 64]


def test_batch_size_and_epochs_are_applied(data, tmp_path):
    (x, y), validation = data
    hp = keras_tuner.HyperParameters()
    hp.Fixed("batch_size", 100)
    hp.Fixed("epochs", 3)
    recipe = _small_recipe(epochs=(1, 5))
    model = recipe.build(hp)
    history = recipe.fit(hp, model, x, y, validation_data=validation)
    assert len(history.history["loss"]) == 3
    assert int(model.optimizer.iterations) == 3 * 6  # 600 examples / 100 per batch


def test_pruned_random_search_stops_bad_trials(data, tmp_path):
    (x, y), validation = data
    tuner = tuning.RandomSearch(
        _small_recipe(epochs=3), max_trials=4, seed=3,
        pruner=tuning.MedianPruner(startup_trials=1, warmup_epochs=0),
        directory=str(tmp_path), project_name="pruned")
    tuner.search(x, y, validation_data=validation, verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 4 and all(t.status == "COMPLETED" for t in trials)
    pruned = tuner.oracle.pruned_trials
    assert pruned, "no trial was pruned"
    last_epochs = []
    for trial_id, info in pruned.items():
        trial = tuner.oracle.get_trial(trial_id)
        steps = [obs.step for obs in trial.metrics.get_history("val_accuracy")]
        assert max(steps) == info["epoch"]  # training ended at the pruning decision
        assert "pruned" in trial.message and np.isfinite(trial.score)
        last_epochs.append(max(steps))
    assert min(last_epochs) < 2, "no pruned trial stopped before its last epoch"


def test_nan_trial_is_recorded_and_search_goes_on(data, tmp_path):
    (x, y), validation = data
    recipe = tuning.RecipeHyperModel(
        (40,), 10, architecture=tuning.MLPSpace(fixed={"depth": 1, "activation": "relu", "batch_norm": False},
                                     widths=(32,)),  # tanh keeps the logits, and the loss, finite
        optimizer=tuning.OptimizerSpace(families=["sgd"], fixed={"learning_rate": 1e12,
                                                                 "momentum": 0.9}),
        schedule=tuning.ScheduleSpace(families=["constant"]),
        training=tuning.TrainingSpace(batch_sizes=(64,), epochs=2, clipping=False))
    tuner = tuning.RandomSearch(recipe, max_trials=2, seed=0, max_consecutive_failed_trials=5,
                                directory=str(tmp_path), project_name="nan")
    # every trial failed, so the search raises with the first failure (KerasTuner
    # itself raises only after max_consecutive_failed_trials failures in a row)
    with pytest.raises(RuntimeError, match="All 2 trials of the search failed(.|\n)*non-finite loss"):
        tuner.search(x, y, validation_data=validation, verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 2
    for trial in trials:
        assert trial.status == "FAILED"
        assert "non-finite loss" in trial.message


def test_search_is_reproducible_given_a_seed(data, tmp_path):
    (x, y), validation = data
    runs = []
    for name in ("first", "second"):
        tuner = tuning.RandomSearch(_small_recipe(epochs=1), max_trials=2, seed=11,
                                    directory=str(tmp_path), project_name=name)
        tuner.search(x, y, validation_data=validation, verbose=0)
        runs.append([(t.hyperparameters.values, t.score)
                     for t in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)])
    assert [values for values, _ in runs[0]] == [values for values, _ in runs[1]]
    np.testing.assert_allclose([s for _, s in runs[0]], [s for _, s in runs[1]], rtol=0, atol=1e-6)
