"""On JAX, ``keras.distribution.DataParallel`` over 2 devices trains as one device does.

The JAX analogue of the ``MirroredStrategy`` tests (issue 21). One subprocess
(``KERAS_BACKEND=jax``, ``XLA_FLAGS=--xla_force_host_platform_device_count=2``)
runs ``tests/optimizers/_jax_data_parallel.py``: for each case (by default
``DEFAULT_CASES`` there, ~50 CPU-seconds with the process start: Adan, LARS,
RAdam with gradient accumulation, Lookahead, LayerwiseLearningRate, SAM through
SAMModel, a ``TransformedOptimizer`` with ``ClipByGlobalNorm`` +
``SkipNonFinite``, Prodigy, ScheduleFree, Shampoo, SOAP, ``Adan`` on our
``OneCycle`` schedule, and the ``GradientClipping``, ``EarlyStopping`` and
``SWA`` callbacks; with ``KERAS_TRAINKIT_DATA_PARALLEL_ALL=1`` every optimizer
and variant of ``backend_fit.cases()`` as well, ~90 CPU-seconds) ``model.fit`` (XLA) trains the same model from the same weights on
the same batches once on one device and once under ``DataParallel`` (global
batch 8 split 4 + 4, gradients all-reduced). The final weights and the losses
must agree within float32 tolerance, and the data-parallel run must really
span 2 devices (the distribution's mesh, and every model and optimizer
variable replicated on both).

Tolerance: the two runs differ only in the order float32 sums are reduced (per
device, then across devices). After 48 updates the relative difference is
below 4e-7 for every case but LARS (~4e-6; likely its trust ratio
``||w|| / ||g||``, which divides by the gradient norm: not traced), so ``RELATIVE_TOLERANCE`` is 1e-5.

Test ids avoid bare component names (``dp_RAdam``, not ``RAdam``) so that
``scripts/make_backend_table.py`` does not count these TensorFlow-process
results as TensorFlow results of the component.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests._other_backend import run_under_backend
from tests.optimizers import _jax_data_parallel, backend_fit

DEVICES = 2
RELATIVE_TOLERANCE = 1e-5
# Known failures, each with its cause; strict xfail, so a fix makes the test say to remove it.
KNOWN_FAILURES: dict[str, str] = {}

pytestmark = [pytest.mark.slow, pytest.mark.backends]


EVERYTHING = os.environ.get("KERAS_TRAINKIT_DATA_PARALLEL_ALL") == "1"


def _case_names():
    return list(_jax_data_parallel.cases(EVERYTHING))


def _case_id(name: str) -> str:
    return "dp_" + name.replace("-", "_")


CASES = [
    pytest.param(name, id=_case_id(name),
                 marks=[pytest.mark.xfail(reason=KNOWN_FAILURES[name], strict=True)]
                 if name in KNOWN_FAILURES else [])
    for name in _case_names()
]


def _selected_cases(session):
    """The case names of this module's selected tests (``-k SOAP`` runs only those), or ``None`` for all."""
    names = set()
    for item in session.items:
        if item.module.__name__ != __name__:
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "name" not in params:
            return None
        names.add(params["name"])
    return names or None


@pytest.fixture(scope="module")
def payload(request, tmp_path_factory):
    """The script's JSON: one subprocess for the module (selected cases only)."""
    output = tmp_path_factory.mktemp("jax_data_parallel") / "results.json"
    flags = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""),
                                   f"--xla_force_host_platform_device_count={DEVICES}"]))
    names = _selected_cases(request.session)
    run_under_backend("jax", ["-m", "tests.optimizers._jax_data_parallel", str(output),
                              *(["--all"] if EVERYTHING else []), *sorted(names or [])],
                      timeout=900, extra_env={"XLA_FLAGS": flags})
    result = json.loads(output.read_text())
    assert result["backend"] == "jax"
    return result


def test_two_host_devices(payload):
    assert payload["jax_devices"] == DEVICES


@pytest.mark.parametrize("name", CASES)
def test_data_parallel_matches_one_device(payload, name):
    record = payload["results"][name]
    assert record["ok"], record.get("traceback")
    single, parallel = record["single"], record["parallel"]
    # Really data-parallel: a 2-device mesh, every variable (model and optimizer) on both devices.
    assert parallel["mesh_devices"] == DEVICES
    assert parallel["weight_devices"] == [DEVICES]
    assert parallel["optimizer_devices"] == [DEVICES]
    assert single["weight_devices"] == single["optimizer_devices"] == [1]
    # Same training: as many epochs (EarlyStopping), same losses, same final weights.
    assert len(parallel["loss"]) == len(single["loss"])
    np.testing.assert_allclose(parallel["loss"], single["loss"], rtol=RELATIVE_TOLERANCE)
    assert backend_fit.relative_difference(parallel["weights"], single["weights"]) <= RELATIVE_TOLERANCE


def test_every_case_ran(payload):
    assert set(payload["results"]) == set(_case_names())
