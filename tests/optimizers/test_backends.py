"""Every optimizer and wrapper in ``model.fit`` on JAX and PyTorch gives TensorFlow's numbers.

``tests/optimizers/backend_fit.py`` runs every registered optimizer (and a few
variants) on one backend: 104 updates of ``model.fit`` with the backend's
default ``jit_compile`` (XLA on JAX), ``evaluate``, ``predict``, ``.keras``
save/load with the slots, resumed training; on JAX also ``stateless_apply``
under ``jax.jit`` and, for the cases with control flow, ``jit_compile=False``.
Each backend runs in its own subprocess (``KERAS_BACKEND`` is read once, at
import); the current backend runs in this process. The TensorFlow numbers are
the reference: weights, losses and predictions must agree within float32
tolerance. About 10 minutes on two busy cores: marked ``backends`` (and
``slow``) so a lane can select or leave it (``-m backends``). Selecting cases
(``-k SOAP``) computes only those cases, on every backend.

The optimizer reference tests (``test_reference_*.py``) run on any backend as
well: ``reference_problems.run_keras`` uses ``stateless_apply`` under
``jax.jit`` on JAX and an eager loop on PyTorch, so a CI lane can run them with
``KERAS_BACKEND=jax`` / ``torch`` (float64 cases skip there: Keras's type
promotion computes float64 in float32 off TensorFlow).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from tests._other_backend import run_under_backend
from tests.optimizers import backend_fit

REFERENCE = "tensorflow"
BACKENDS = ["jax", "torch"]
RELATIVE_TOLERANCE = 2e-5
# Known failures, each with its cause; strict xfail, so a fix makes the test say to remove it.
KNOWN_FAILURES = {}

pytestmark = [pytest.mark.slow, pytest.mark.backends]


def _run_backend(backend: str, directory: Path, names=None) -> dict:
    reference = backend == REFERENCE
    if backend == keras.backend.backend():
        return backend_fit.run(str(directory), names, reference=reference)
    output = directory / f"{backend}.json"
    run_under_backend(backend, ["-m", "tests.optimizers.backend_fit", str(output),
                                *(["--reference"] if reference else []), *sorted(names or [])],
                      timeout=1800)
    payload = json.loads(output.read_text())
    assert payload["backend"] == backend
    return payload["results"]


def _selected_cases(session):
    """The case names of the selected tests (``-k SOAP`` runs only those), or ``None`` for all."""
    names = set()
    for item in session.items:
        if item.name.startswith("test_reference_backend_runs_every_case"):
            return None
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.module.__name__ == __name__ and "name" in params:
            names.add(params["name"])
    return names or None


@pytest.fixture(scope="module")
def results(request, tmp_path_factory):
    """``{backend: {case: record}}``, each backend computed once for the module (selected cases only)."""
    cache = {}
    names = _selected_cases(request.session)

    def get(backend):
        if backend not in cache:
            cache[backend] = _run_backend(backend, tmp_path_factory.mktemp(backend), names)
        return cache[backend]

    return get


CASES = [
    pytest.param(
        name, backend, id=f"{name}-{backend}",
        marks=[pytest.mark.xfail(reason=KNOWN_FAILURES[name, backend], strict=True)]
        if (name, backend) in KNOWN_FAILURES else [],
    )
    for name in backend_fit.cases()
    for backend in BACKENDS
]


@pytest.mark.parametrize("name, backend", CASES)
def test_same_numbers_as_tensorflow(results, name, backend):
    reference = results(REFERENCE)[name]
    assert reference["ok"], reference.get("traceback")
    record = results(backend)[name]
    assert record["ok"], record.get("traceback")
    # 104 updates of model.fit, then predict and evaluate.
    assert backend_fit.relative_difference(record["weights"], reference["weights"]) <= RELATIVE_TOLERANCE
    assert backend_fit.relative_difference([record["predict"]], [reference["predict"]]) <= RELATIVE_TOLERANCE
    np.testing.assert_allclose(record["loss"], reference["loss"], rtol=RELATIVE_TOLERANCE)
    np.testing.assert_allclose(record["evaluate"], reference["evaluate"], rtol=RELATIVE_TOLERANCE)
    # .keras save/load keeps the slots; training continues exactly.
    assert record["slots_restored"]
    assert record["resume_difference"] <= 1e-6
    if backend == "jax":
        if name in backend_fit.EAGER_CASES:
            eager = record["weights_epoch_1_eager"]
            assert backend_fit.relative_difference(eager, reference["weights_epoch_1"]) <= RELATIVE_TOLERANCE
        if name in backend_fit.STATELESS_EXEMPT:
            assert "stateless_difference" not in record
        else:
            assert record["stateless_difference"] <= 1e-6


def test_reference_backend_runs_every_case(results):
    reference = results(REFERENCE)
    failed = {name: record["error"] for name, record in reference.items() if not record["ok"]}
    assert not failed
    assert set(reference) == set(backend_fit.cases())
