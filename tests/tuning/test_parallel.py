"""Two workers and a chief on 127.0.0.1 through KerasTuner's own protocol."""

import functools
import json

import pytest

from keras_trainkit import datasets
from keras_trainkit.tuning.parallel import parallel_search
from tests.tuning._parallel_helpers import make_tuner


@pytest.mark.slow
def test_two_workers_share_one_search(tmp_path):
    (x, y), _ = datasets.load_mnist1d()
    factory = functools.partial(make_tuner, str(tmp_path))
    tuner = parallel_search(factory, x[:256], y[:256],
                            validation_data=(x[3000:3128], y[3000:3128]), parallel_trials=2,
                            gpus=[])
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 4 and all(t.status == "COMPLETED" for t in trials)
    runners = {json.loads((tmp_path / "parallel" / f"trial_{t.trial_id}" / "runner.json")
                          .read_text())["tuner_id"] for t in trials}
    assert runners == {"tuner0", "tuner1"}, runners
    assert tuner.get_best_models(1)[0].output_shape == (None, 10)


def test_bad_parallel_trials():
    with pytest.raises(ValueError, match="Received: parallel_trials=0"):
        parallel_search(lambda: None, parallel_trials=0)


@pytest.mark.parametrize("arguments, error, message", [
    ({"make_tuner": 3}, TypeError, r"`make_tuner` must be a function returning the tuner"),
    ({"make_tuner": lambda: None}, TypeError,
     r"`make_tuner` must be picklable for the worker processes: a module-level function"),
    ({"gpus": [-1]}, ValueError, r"Argument `gpus` must be >= 0\. Received: gpus=-1"),
    ({"gpus": ["0"]}, TypeError, r"Argument `gpus` must be an integer, not str"),
    ({"gpus": 0}, TypeError, r"`gpus` must be a list of GPU indices\. Received: gpus=0"),
    ({"gpu_memory_limit_mb": "x"}, TypeError, r"Argument `gpu_memory_limit_mb` must be"),
    ({"gpu_memory_limit_mb": 0}, ValueError, r"Received: gpu_memory_limit_mb=0"),
])
def test_bad_arguments_are_refused_before_any_process_starts(arguments, error, message):
    """Before, each started a chief and the workers, which failed and surfaced as
    "Parallel search workers failed: tuner0 (exit code 1), ..." (a lambda: PicklingError)."""
    arguments = {"make_tuner": functools.partial(make_tuner, "unused"), **arguments}
    with pytest.raises(error, match=message):
        parallel_search(arguments.pop("make_tuner"), **arguments)
