"""A search saved under a path with glob characters resumes with its own trials.

KerasTuner's ``Oracle.reload`` finds ``trial_<id>/trial.json`` with a glob pattern made
of the project's path: in ``runs[1]`` it found no trial (the resumed search ran trial
``0`` again over the first one's folder, then failed with ``KeyError: '1'``), and it read
the trials of a sibling ``runs1`` as its own. The reference is KerasTuner's own record of
the first search (``oracle.trials``), read before the rerun.
"""

import keras
import keras_tuner
import numpy as np
import pytest

from keras_trainkit import tuning


def _build(hp):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Int("units", 2, 64)),
                              keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], run_eagerly=True)
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


class _Kill(keras.callbacks.Callback):
    """Stops the process's search in the first epoch of its second trial, as a kill would."""

    begun = []

    def on_epoch_begin(self, epoch, logs=None):
        _Kill.begun.append(epoch)
        if len(_Kill.begun) == 2:
            raise KeyboardInterrupt


def _values(tuner):
    return {tid: trial.hyperparameters.values for tid, trial in tuner.oracle.trials.items()}


TUNERS = {"ours": tuning.RandomSearch,
          "trainkit_tuner": tuning.trainkit_tuner(keras_tuner.RandomSearch)}


@pytest.mark.parametrize("kind", sorted(TUNERS))
def test_a_search_in_a_folder_named_with_brackets_resumes_its_own_trials(tmp_path, kind):
    x, y = _data()

    def make(folder, max_trials, seed):
        return TUNERS[kind](_build, objective="val_accuracy", max_trials=max_trials, seed=seed,
                            directory=str(tmp_path / folder), project_name="search")

    other = make("runs1", 2, seed=7)  # the folder the pattern "runs[1]" also matches
    other.search(x, y, epochs=1, validation_data=(x, y), verbose=0)
    first = make("runs[1]", 2, seed=1)
    _Kill.begun = []
    with pytest.raises(KeyboardInterrupt):  # in trial 1, after trial 0 completed
        first.search(x, y, epochs=1, validation_data=(x, y), callbacks=[_Kill()], verbose=0)
    recorded = _values(first)
    assert [t.status for t in first.oracle.trials.values()] == ["COMPLETED", "RUNNING"]

    resumed = make("runs[1]", 3, seed=1)
    assert _values(resumed) == recorded  # was {} (and another search's trials with "runs1")
    resumed.search(x, y, epochs=1, validation_data=(x, y), verbose=0)
    values = _values(resumed)
    assert len(values) == 3 and {k: values[k] for k in recorded} == recorded
    assert all(t.status == "COMPLETED" for t in resumed.oracle.trials.values())
