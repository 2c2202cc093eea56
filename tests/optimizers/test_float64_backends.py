"""Every optimizer steps float64 variables on JAX and PyTorch without an error.

Keras 3.15 computes float64 results in float32 off TensorFlow (its JAX-style type
promotion; ``keras.ops.matmul`` of two float64 tensors returns float32 on PyTorch),
so the float64 reference tests skip there (``reference_problems.run_keras``). What
must still hold is that a float64 model trains: SOAP crashed on PyTorch
(``expected scalar type Float but found Double``) when a float32 product met a
float64 one. Each case runs 12 updates of a float64 kernel and bias with float64
gradients, in a fresh process per backend.
"""

from __future__ import annotations

import json

import pytest

from tests._other_backend import run_under_backend

pytestmark = pytest.mark.backends

SCRIPT = r'''
import json, sys
import numpy as np
import keras
from tests.optimizers import backend_fit

rng = np.random.default_rng(0)
results = {}
for name, make in backend_fit.cases().items():
    if name in backend_fit.MODEL_WRAPPERS:  # SAM's step needs SAMModel's second gradient
        continue
    kernel = keras.Variable(rng.normal(size=(6, 4)), dtype="float64", name="kernel")
    bias = keras.Variable(np.zeros(4), dtype="float64", name="bias")
    start = np.asarray(kernel).copy()
    try:
        optimizer = make()
        for _ in range(12):
            gradients = [keras.ops.convert_to_tensor(rng.normal(size=(6, 4)), "float64"),
                         keras.ops.convert_to_tensor(rng.normal(size=(4,)), "float64")]
            optimizer.apply(gradients, [kernel, bias])
        final = np.asarray(kernel)
        results[name] = {"finite": bool(np.all(np.isfinite(final))),
                         "moved": float(np.max(np.abs(final - start)))}
    except Exception as error:  # recorded, so one run reports every case
        results[name] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
print(json.dumps(results))
'''


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_every_optimizer_steps_float64_variables(backend):
    completed = run_under_backend(backend, ["-c", SCRIPT], timeout=600)
    results = json.loads(completed.stdout.splitlines()[-1])
    assert len(results) >= 20, sorted(results)
    failures = {name: result for name, result in results.items()
                if "error" in result or not result["finite"] or result["moved"] <= 0}
    assert failures == {}
