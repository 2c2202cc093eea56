"""Loading a data set leaves the caller's random state as it was."""

import random

import numpy as np

from keras_trainkit import datasets


def test_generating_mnist1d_keeps_pythons_random_state(tmp_path, monkeypatch):
    """mnist1d's make_dataset seeds Python's `random` too (mnist1d.utils.set_seed): after a
    cache miss, `random` restarted from seed 42, after a cache hit it went on, so a script's
    draws differed between its first run and the next ones."""
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path))  # an empty cache: generated
    draws = {}
    for run in ("cache miss", "cache hit"):
        random.seed(123)
        np.random.seed(123)
        datasets.load_mnist1d()
        draws[run] = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.random())
    assert draws == {"cache miss": expected, "cache hit": expected}
