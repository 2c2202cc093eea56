"""The initialization check, the gradient check, ``trainkit check-init`` and ``lr-find`` on JAX and PyTorch.

``tests/diagnostics/backend_checks.py`` runs everything once per backend (one
subprocess each: ``KERAS_BACKEND`` is read at import); the current backend
(TensorFlow) runs in this process and is the reference. The models get their
weights from NumPy, so the per-layer statistics, the losses and the autodiff
gradients must agree with TensorFlow's within float32 tolerance.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests._other_backend import run_under_backend
from tests.diagnostics import backend_checks

pytestmark = [pytest.mark.backends]
BACKENDS = ["jax", "torch"]
RTOL = 1e-4  # float32 sums in another order
STAT_KEYS = ("activation_mean", "activation_std", "gradient_std", "kernel_gradient_std", "dead_fraction")


@pytest.fixture(scope="module")
def reference():
    return backend_checks.run()


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """``{backend: results}``, each computed lazily, once for the module."""
    cache = {}

    def get(backend):
        if backend not in cache:
            out = tmp_path_factory.mktemp(backend) / "results.json"
            run_under_backend(backend, ["-m", "tests.diagnostics.backend_checks", str(out)], timeout=600)
            cache[backend] = json.loads(out.read_text())
        return cache[backend]

    return get


def _assert_same_init(ours, theirs):
    assert [layer["name"] for layer in ours["layers"]] == [layer["name"] for layer in theirs["layers"]]
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=RTOL)
    for mine, ref in zip(ours["layers"], theirs["layers"]):
        for key in STAT_KEYS:
            if ref[key] is None:
                assert mine[key] is None, (mine["name"], key)
            else:
                np.testing.assert_allclose(mine[key], ref[key], rtol=RTOL, atol=1e-7, err_msg=f"{mine['name']} {key}")
    assert [w["kind"] for w in ours["warnings"]] == [w["kind"] for w in theirs["warnings"]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_initialization_check_matches_tensorflow(backend, reference, other):
    results = other(backend)
    assert results["backend"] == backend
    _assert_same_init(results["init_labelled"], reference["init_labelled"])
    _assert_same_init(results["init_surrogate"], reference["init_surrogate"])
    assert "identical_units" in results["init_symmetric_kinds"]
    assert results["init_symmetric_kinds"] == reference["init_symmetric_kinds"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_check_passes_with_tensorflows_gradients(backend, reference, other):
    ours, ref = other(backend)["gradient_check"], reference["gradient_check"]
    assert ours["passed"] and ours["dtype"] == "float32", ours
    assert sorted(ours["analytic"]) == sorted(ref["analytic"])
    for coordinate, value in ref["analytic"].items():
        np.testing.assert_allclose(ours["analytic"][coordinate], value, rtol=1e-3, atol=1e-7, err_msg=coordinate)


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_init_and_lr_find_commands_run(backend, reference, other):
    results = other(backend)
    check_init = results["check_init"]
    assert check_init["status"] == 0, check_init
    assert [layer["name"] for layer in check_init["layers"]] == \
        [layer["name"] for layer in reference["check_init"]["layers"]]
    assert np.isfinite(check_init["loss"])
    lr_find = results["lr_find"]
    assert lr_find["status"] == 0 and lr_find["png"] and lr_find["steps"] >= 2, lr_find
    assert 1e-7 <= lr_find["suggestion"] <= 10.0
