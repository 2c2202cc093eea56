"""A reloaded grid search goes on through its grid.

KerasTuner's ``GridSearchOracle`` does not save its place in the grid (its trials in the
order of their values, and the trials whose next combination is still to be made). A
search run again over its folder failed at its next trial with a ``KeyError`` (after a
kill mid-trial) or ended at once, silently, with the rest of the grid untried (after a
search that stopped at ``max_trials``, or a second rerun).
"""

import keras
import keras_tuner
import numpy as np
import pytest

from keras_trainkit import tuning

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 5)).astype("float32")
Y = (X[:, :1] > 0).astype("float32")
GRID = [{"units": units, "learning_rate": rate} for units in (4, 8) for rate in (0.01, 0.03, 0.1)]


def build(hp):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(hp.Choice("units", [4, 8])),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.SGD(hp.Choice("learning_rate", [0.01, 0.03, 0.1])), "binary_crossentropy")
    return model


TUNERS = {
    "ours": tuning.GridSearch,
    "keras_tuner": tuning.trainkit_tuner(keras_tuner.GridSearch),
}


@pytest.mark.parametrize("kind", sorted(TUNERS))
def test_a_search_run_again_with_a_larger_budget_tries_the_rest_of_the_grid(kind, tmp_path):
    for max_trials in (2, 4, 6):
        tuner = TUNERS[kind](build, objective="val_loss", max_trials=max_trials, directory=tmp_path,
                             project_name="grid")
        tuner.search(X, Y, epochs=1, validation_data=(X, Y), verbose=0)
        trials = tuner.oracle.trials
        assert sorted(trials, key=int) == [str(i) for i in range(max_trials)]
    assert [trials[str(i)].hyperparameters.values for i in range(6)] == GRID
