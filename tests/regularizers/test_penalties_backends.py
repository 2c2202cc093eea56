"""The model-level penalties train to TensorFlow's numbers on JAX and PyTorch, and under JAX's DataParallel.

``tests/regularizers/penalty_fit.py`` runs in a subprocess per backend (and once
on JAX with two host devices under ``keras.distribution.DataParallel``); its
numbers are compared with the same run in this (TensorFlow) process, whose
penalties and their gradients ``test_penalties.py`` checks against numpy and
finite differences. 104 updates of SGD with momentum: float32 round-off that
differs between backends stays below ``RELATIVE_TOLERANCE`` of the weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests._other_backend import run_under_backend
from tests.optimizers.backend_fit import relative_difference
from tests.regularizers import penalty_fit

pytestmark = pytest.mark.backends
RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tensorflow_results():
    return penalty_fit.run()


def _other_backend_results(backend, tmp_path, data_parallel=False):
    output = tmp_path / f"{backend}.json"
    argv = ["-m", "tests.regularizers.penalty_fit", str(output)]
    extra_env = None
    if data_parallel:
        argv.append("--data-parallel")
        extra_env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    run_under_backend(backend, argv, timeout=600, extra_env=extra_env)
    report = json.loads(output.read_text())
    assert report["backend"] == backend
    return report


def _assert_same_numbers(ours, reference, label):
    for case in penalty_fit.DETERMINISTIC:
        assert ours[case]["ok"], f"{label} {case}: {ours[case].get('traceback')}"
        assert reference[case]["ok"], f"tensorflow {case}: {reference[case].get('traceback')}"
        weights = relative_difference(ours[case]["weights"], reference[case]["weights"])
        assert weights < RELATIVE_TOLERANCE, (label, case, weights)
        np.testing.assert_allclose(ours[case]["loss"], reference[case]["loss"], rtol=RELATIVE_TOLERANCE,
                                   err_msg=f"{label} {case}")
        np.testing.assert_allclose(ours[case]["penalty"], reference[case]["penalty"],
                                   rtol=RELATIVE_TOLERANCE, err_msg=f"{label} {case}")
        for metric in ("loss", "penalty"):
            np.testing.assert_allclose(ours[case]["evaluate"][metric], reference[case]["evaluate"][metric],
                                       rtol=RELATIVE_TOLERANCE, err_msg=f"{label} {case} evaluate")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_penalties_train_to_tensorflow_numbers(backend, tmp_path, tensorflow_results):
    report = _other_backend_results(backend, tmp_path)
    _assert_same_numbers(report["results"], tensorflow_results, backend)
    # The penalties did something: the runs differ from plain training by far more than the tolerance.
    assert tensorflow_results["jacobian"]["penalty"][0] > 1e-3
    # JacobianPenalty draws 2 projections a batch (104 training steps, then 8 evaluation
    # batches); on JAX its seed state is carried by the stateless training and evaluation
    # steps (tracked by PenalizedModel), so it advances as on TensorFlow.
    draws = 2 * (penalty_fit.STEPS + penalty_fit.BATCHES)
    for results in (report["results"], tensorflow_results):
        assert results["projections"]["ok"], results["projections"].get("traceback")
        assert results["projections"] == {"ok": True, "seed_counter": draws, "finite": True}


def test_penalties_under_jax_data_parallel(tmp_path, tensorflow_results):
    report = _other_backend_results("jax", tmp_path, data_parallel=True)
    assert report["devices"] == 2
    _assert_same_numbers(report["results"], tensorflow_results, "jax DataParallel")
