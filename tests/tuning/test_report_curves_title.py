"""The report's learning curves say what the tuner reported.

``learning_curves.png`` of our ``tuning.Hyperband`` was titled "KerasTuner's Hyperband
reports each trial's best epoch only" while our tuners report every epoch (its curves
had up to 3 points); KerasTuner's own ``RandomSearch``, whose curves are single points,
got no such note. The reference is KerasTuner's record of each trial
(``oracle.trials[...].metrics``): the number of epochs it holds.
"""

import keras
import keras_tuner
import numpy as np
import pytest

from keras_trainkit import tuning
from keras_trainkit.tuning.report import summary_table, write_report


class TinyModel(keras_tuner.HyperModel):
    def build(self, hp):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Int("units", 2, 8)),
                                  keras.layers.Dense(2)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], run_eagerly=True)
        return model


def _search(tuner):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    tuner.search(x, y, epochs=3, validation_data=(x, y), verbose=0)
    return tuner


def _epochs_recorded(tuner):
    return sorted(len(t.metrics.get_history("val_accuracy")) for t in tuner.oracle.trials.values())


@pytest.mark.parametrize("kind", ["ours_hyperband", "keras_tuner_random_search"])
def test_the_curves_title_says_best_epoch_only_only_when_so(tmp_path, figures, kind):
    if kind == "ours_hyperband":
        tuner = tuning.Hyperband(TinyModel(), objective="val_accuracy", max_epochs=3, factor=3,
                                 hyperband_iterations=1, seed=0, directory=str(tmp_path),
                                 project_name="hb")
    else:
        tuner = keras_tuner.RandomSearch(TinyModel(), objective="val_accuracy", max_trials=2,
                                         seed=0, directory=str(tmp_path), project_name="rs")
    recorded = _epochs_recorded(_search(tuner))
    write_report(tuner, str(tmp_path / "report"))
    axes = figures["learning_curves.png"].axes[0]
    assert sorted(len(line.get_xdata()) for line in axes.lines) == recorded
    says_best_only = "best epoch only" in axes.get_title()
    assert says_best_only == (max(recorded) == 1), (axes.get_title(), recorded)


EPOCHS_SEEN = []  # len(History.epoch) of every fit the search ran


class CountingModel(TinyModel):
    def fit(self, hp, model, *args, **kwargs):
        history = model.fit(*args, **kwargs)
        EPOCHS_SEEN.append(len(history.epoch))
        return history


def test_epochs_trained_in_all_counts_every_execution(tmp_path):
    # Two executions of 2 epochs per trial: the summary said "4 epochs trained in all"
    # where Keras's Histories hold 8 (or 6 with a trial pruned in its first execution).
    EPOCHS_SEEN.clear()
    tuner = tuning.RandomSearch(CountingModel(), objective="val_loss", max_trials=2,
                                executions_per_trial=2, seed=3, directory=str(tmp_path),
                                pruner=tuning.MedianPruner(startup_trials=1, warmup_epochs=0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    tuner.search(x, y, epochs=2, validation_data=(x, y), verbose=0)
    table = summary_table(tuner)
    assert f"{sum(EPOCHS_SEEN)} epochs trained in all" in table, (EPOCHS_SEEN, table)
