"""Every TrainkitOptimizer on float16 variables: float32 state, finite weights, the float32 run's trajectory.

float16 holds neither small second moments (``(1 - beta_2) g**2`` underflows
below 6e-8, so ``v`` is 0 and the step ``m / epsilon`` explodes) nor tiny
epsilons (AdaBelief's ``1e-16`` is 0), nor Shampoo's statistics. Every
optimizer keeps its slots (Keras's gradient accumulators and EMA included) in
float32 for a 16-bit variable and computes its update in float32; only the
new weight is rounded to float16. The gradients here are small (about 1e-3)
and the learning rates large enough that each step moves a weight by many
float16 units, so the float16 trajectory must follow the float32 one up to
the rounding of the weights.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_trainkit.optimizers as optimizers

STEPS = 100
GRADIENT_SCALE = 1e-3
# Differences of float16 weight rounding, relative to the float32 run's displacement.
RELATIVE_TOLERANCE = 5e-2

TRAINKIT = {
    name: cls
    for name, cls in sorted(optimizers.REGISTRY.classes.items())
    if issubclass(cls, optimizers.TrainkitOptimizer)
}
ARGUMENTS = {
    "LARS": {"learning_rate": 10.0},
    "Prodigy": {"learning_rate": 1.0, "d0": 1e-2},
    "Shampoo": {"learning_rate": 0.05, "max_block_size": 4, "start_preconditioning_step": 2,
                "preconditioning_compute_steps": 3},
}


def _make(name, **extra):
    return TRAINKIT[name](**{"learning_rate": 0.05, **ARGUMENTS.get(name, {}), **extra})


def _run(name, dtype, **extra):
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(6, 5)), rng.normal(size=(5,))]
    variables = [keras.Variable(w.astype(dtype), dtype=dtype, name=n) for w, n in zip(start, ("kernel", "bias"))]
    optimizer = _make(name, **extra)
    optimizer.build(variables)
    def apply(grads):
        optimizer.apply(grads, variables)

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        apply = tf.function(apply)
    for _ in range(STEPS):
        apply([keras.ops.convert_to_tensor((GRADIENT_SCALE * rng.normal(size=w.shape)).astype(dtype)) for w in start])
    return optimizer, [keras.ops.convert_to_numpy(v).astype("float64") for v in variables], start


@pytest.mark.parametrize("name", list(TRAINKIT))
def test_float16_follows_float32(name):
    optimizer, half, start = _run(name, "float16")
    _, single, _ = _run(name, "float32")
    assert all(np.all(np.isfinite(w)) for w in half)
    moved = max(np.abs(s - w).max() for s, w in zip(single, start))
    error = max(np.abs(h - s).max() for h, s in zip(half, single))
    assert error <= RELATIVE_TOLERANCE * moved, (error / moved)
    slots = [v for v in optimizer.variables if keras.backend.is_float_dtype(v.dtype)]
    slots = [v for v in slots if "learning_rate" not in v.name]
    assert slots and all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in slots)


@pytest.mark.parametrize("name", ["RAdam", "Yogi"])
def test_float16_with_accumulation_and_ema(name):
    optimizer, half, _ = _run(name, "float16", gradient_accumulation_steps=2, use_ema=True)
    assert all(np.all(np.isfinite(w)) for w in half)
    assert int(optimizer.iterations) == STEPS // 2
    accumulators = [v for v in optimizer.variables if "accumulator" in v.name or "average" in v.name]
    assert accumulators and all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in accumulators)
