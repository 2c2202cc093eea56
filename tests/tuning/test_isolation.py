"""Trials in fresh subprocesses: results, pruning reports and failures come back."""

import os

import numpy as np
import pytest

from keras_trainkit import datasets, tuning


class FailSecondTrial(tuning.RecipeHyperModel):
    """The first trial leaves a marker file; the trial that finds it raises."""

    def __init__(self, marker, **kwargs):
        super().__init__(**kwargs)
        self.marker = marker

    def fit(self, hp, model, *args, **kwargs):
        if os.path.exists(self.marker):
            raise RuntimeError(f"planted failure in process {os.getpid()}")
        open(self.marker, "w").close()
        return super().fit(hp, model, *args, **kwargs)


@pytest.mark.slow
def test_isolated_search(tmp_path):
    (x, y), _ = datasets.load_mnist1d()
    recipe = FailSecondTrial(
        str(tmp_path / "marker"), input_shape=(40,), num_classes=10,
        architecture=tuning.MLPSpace(fixed={"depth": 1}, widths=(16, 32)),
        training=tuning.TrainingSpace(batch_sizes=(128,), epochs=2, clipping=False))
    tuner = tuning.RandomSearch(recipe, max_trials=2, seed=0, isolate_trials=True,
                                directory=str(tmp_path), project_name="iso")
    tuner.search(x[:256], y[:256], validation_data=(x[3000:3128], y[3000:3128]))
    first, second = (tuner.oracle.get_trial(t) for t in tuner.oracle.end_order)
    assert first.status == "COMPLETED" and np.isfinite(first.score)
    steps = [o.step for o in first.metrics.get_history("val_accuracy")]
    assert steps == [0, 1]  # reported epoch by epoch from the child
    assert second.status in ("FAILED", "INVALID") and "planted failure" in second.message
    assert f"process {os.getpid()}" not in second.message  # it ran elsewhere
    model = tuner.get_best_models(1)[0]  # weights written by the child, loaded here
    assert model.predict(x[:2], verbose=0).shape == (2, 10)


def conditional_build(hp):
    """A model whose Adam rate is registered only when Adam is drawn (as a recipe's
    per-optimizer hyperparameters are)."""
    import keras

    model = keras.Sequential([keras.Input((40,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(10)])
    if hp.Choice("optimizer", ["sgd", "adam"]) == "adam":
        optimizer = keras.optimizers.Adam(hp.Float("adam_rate", 1e-4, 1e-1, sampling="log"))
    else:
        optimizer = keras.optimizers.SGD(0.01)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.slow
def test_hyperparameters_an_isolated_build_registers_are_tuned_as_in_process(tmp_path):
    # Before, the child's registrations never reached the search: "adam_rate" was never in
    # the oracle's space or a trial's record, and every Adam trial trained at the default.
    (x, y), _ = datasets.load_mnist1d()
    values = {}
    for isolate in (False, True):
        tuner = tuning.RandomSearch(conditional_build, objective="val_loss", max_trials=6, seed=3,
                                    isolate_trials=isolate, directory=str(tmp_path),
                                    project_name=f"conditional_{isolate}")
        tuner.search(x[:128], y[:128], epochs=1, validation_data=(x[3000:3064], y[3000:3064]), verbose=0)
        assert "adam_rate" in [hp.name for hp in tuner.oracle.hyperparameters.space]
        values[isolate] = [tuner.oracle.get_trial(t).hyperparameters.values for t in tuner.oracle.end_order]
    assert values[True] == values[False]
    rates = [v["adam_rate"] for v in values[True] if v["optimizer"] == "adam"]
    assert len(set(rates)) > 1  # sampled after the first Adam trial, not the default each time
