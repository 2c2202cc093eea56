"""A search's `seed` is checked when the tuner is made, before its folder exists.
No training: fast."""

import importlib.util

import keras
import keras_tuner
import pytest

from keras_trainkit import tuning

SCORE = keras_tuner.Objective("val_loss", "min")


def build(hp):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(hp.Int("units", 1, 4))])
    model.compile("sgd", "mse")
    return model


def _tuners():
    tuners = [(tuning.RandomSearch, {"max_trials": 2}),
              (tuning.BayesianOptimization, {"max_trials": 2}),
              (tuning.GridSearch, {"max_trials": 2}),
              (tuning.Hyperband, {"max_epochs": 3})]
    if importlib.util.find_spec("optuna") is not None:
        tuners.append((tuning.OptunaSearch, {"max_trials": 2}))
    return [pytest.param(cls, kwargs, id=cls.__name__) for cls, kwargs in tuners]


@pytest.mark.parametrize("tuner_class, kwargs", _tuners())
@pytest.mark.parametrize("seed, error, message", [
    ("a", TypeError, "must be an integer, not str. Received: seed='a'"),
    (1.5, TypeError, "must be an integer, not float. Received: seed=1.5"),
    (True, TypeError, "must be an integer, not bool. Received: seed=True"),
    # Python's random seeds with abs(seed): -1 drew seed 1's stream backwards
    (-1, ValueError, "must be >= 0. Received: seed=-1"),
    (2**32, ValueError, "must be <= 4294967295"),
])
def test_every_tuner_refuses_a_bad_seed_before_its_folder_is_made(
        tmp_path, tuner_class, kwargs, seed, error, message):
    with pytest.raises(error, match="Argument `seed` " + message.replace("(", r"\(")
                       .replace(")", r"\)").replace(".", r"\.")):
        tuner_class(build, objective=SCORE, seed=seed, directory=str(tmp_path),
                    project_name="p", **kwargs)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("tuner_class, kwargs", _tuners())
def test_every_tuner_keeps_a_good_seed(tmp_path, tuner_class, kwargs):
    tuner = tuner_class(build, objective=SCORE, seed=7, directory=str(tmp_path),
                        project_name="p", **kwargs)
    assert tuner.oracle.seed == 7
