"""``seed_oracle`` on KerasTuner's own oracles: the seed it is given is the search's seed.

It used only ``seed=0``; any other seed was ignored, and the stream started from the seed
the oracle was built with, which KerasTuner draws at random when it is built without one:
two searches "seeded" with ``seed_oracle(oracle, 5)`` drew different trials.
"""

import keras_tuner
import pytest

from keras_trainkit import tuning


def draws(seed_at_build, seed, trials=6):
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_loss", max_trials=10, seed=seed_at_build)
    tuning.seed_oracle(oracle, seed)
    space = keras_tuner.HyperParameters()
    space.Float("learning_rate", 1e-4, 1e-1, sampling="log")
    space.Int("units", 8, 512)
    oracle.hyperparameters = space
    return oracle.seed, [oracle.populate_space(str(i))["values"] for i in range(trials)]


@pytest.mark.parametrize("seed", [5, 0])
def test_an_oracle_built_without_a_seed_takes_the_given_one(seed):
    first_seed, first = draws(None, seed)
    second_seed, second = draws(None, seed)
    assert first_seed == second_seed == seed
    assert first == second
    assert draws(seed, seed) == (seed, first)  # as if the oracle had been built with it


def test_the_given_seed_replaces_the_one_the_oracle_was_built_with():
    assert draws(7, 5) == draws(5, 5)
    assert draws(7, 5)[1] != draws(7, 7)[1]


def test_none_keeps_the_oracles_own_seed():
    assert draws(7, None) == draws(7, 7)


@pytest.mark.parametrize("seed", [-1, "a", 1.5, True])
def test_a_seed_that_is_not_an_integer_in_range_is_refused(seed):
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_loss", max_trials=10)
    with pytest.raises((ValueError, TypeError), match=r"Argument `seed` must be"):
        tuning.seed_oracle(oracle, seed)
