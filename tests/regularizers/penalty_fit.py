"""The model-level penalties in ``model.fit`` on the current Keras backend: numbers to compare across backends.

Backend-neutral (``keras`` and ``numpy`` only), so ``tests/regularizers/test_penalties_backends.py``
runs it in a subprocess per backend and compares with TensorFlow's numbers::

    KERAS_BACKEND=jax python -m tests.regularizers.penalty_fit results.json [--data-parallel]

Each case trains ``backend_fit``'s tanh model (4 -> 8 -> 1) from the same weights
on the same batches for 104 updates of SGD with momentum 0.5 (the backend's default
``jit_compile``: XLA on JAX) inside a ``PenalizedModel``, then evaluates:

* ``jacobian``: ``JacobianPenalty`` with sphere projections. With one output the
  projection is ``v = +-1`` and ``||v^T J||^2 = ||J||^2`` exactly, so the run is
  deterministic on every backend although the draws differ between them.
* ``input_gradient``: ``InputGradientPenalty`` on the mean squared error.
* ``batchnorm``: ``InputGradientPenalty`` on a model with ``BatchNormalization``:
  the penalty's own forward pass updates the moving statistics a second time
  each step (JAX: through ``stateless_call``'s returned state).
* ``projections``: ``JacobianPenalty(num_projections=2, projection="gaussian")``,
  random on every backend: the record is the seed generator's counter after
  ``fit`` (2 draws a step; it must advance on JAX too, where the state lives in
  the stateless training step) and whether the loss is finite.

``--data-parallel`` (JAX, two host devices) runs the deterministic cases under
``keras.distribution.DataParallel`` over every device (global batch 8 split 4 + 4).
"""

from __future__ import annotations

import json
import sys

import keras
import numpy as np

from keras_trainkit.regularizers import InputGradientPenalty, JacobianPenalty, PenalizedModel
from tests.optimizers import backend_fit

EPOCHS = 13  # 104 updates of 8 batches of 8
BATCH = backend_fit.BATCH
BATCHES = backend_fit.BATCHES
STEPS = EPOCHS * BATCHES
DETERMINISTIC = ("jacobian", "input_gradient", "batchnorm")


def _batchnorm_model(weights):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, name="hidden")(inputs)
    hidden = keras.layers.Activation("tanh")(keras.layers.BatchNormalization(momentum=0.8)(hidden))
    built = keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))
    kernel, bias, out_kernel, out_bias = weights
    built.set_weights([kernel, bias, np.ones(8, "float32"), np.zeros(8, "float32"),
                       np.zeros(8, "float32"), np.ones(8, "float32"), out_kernel, out_bias])
    return built


def _penalized(case, weights):
    if case == "jacobian":
        return PenalizedModel(backend_fit.model(weights), [JacobianPenalty(0.5)])
    if case == "input_gradient":
        return PenalizedModel(backend_fit.model(weights), [InputGradientPenalty(0.5, loss="mse")])
    if case == "batchnorm":
        return PenalizedModel(_batchnorm_model(weights), [InputGradientPenalty(0.5, loss="mse")])
    if case == "projections":
        return PenalizedModel(backend_fit.model(weights),
                              [JacobianPenalty(0.5, num_projections=2, projection="gaussian", seed=3)])
    raise ValueError(f"Unknown case: {case!r}")


def fit_case(case: str) -> dict:
    """Train and evaluate one case; the numbers as JSON-able lists."""
    x, y, weights = backend_fit.data()
    model = _penalized(case, weights)
    model.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.5), loss="mse")
    history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    evaluation = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    record = {"loss": [float(v) for v in history.history["loss"]],
              "penalty": [float(v) for v in history.history["penalty"]],
              "weights": backend_fit._arrays(model.get_weights()),
              "evaluate": {name: float(value) for name, value in evaluation.items()}}
    if case == "projections":
        state = keras.ops.convert_to_numpy(model.penalties[0].seed_generator.state)
        record = {"seed_counter": int(state[1]), "finite": bool(np.all(np.isfinite(record["loss"])))}
    return record


def run(data_parallel: bool = False) -> dict:
    """Every case (the deterministic ones under ``DataParallel``): ``{case: record}``."""
    results = {}
    if data_parallel:
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
    try:
        for case in DETERMINISTIC if data_parallel else (*DETERMINISTIC, "projections"):
            try:
                results[case] = {"ok": True, **fit_case(case)}
            except Exception as error:  # noqa: BLE001 - reported per case, the run goes on
                results[case] = backend_fit.failure_record(error)
    finally:
        keras.distribution.set_distribution(None)
    return results


def main(argv):
    """``python -m tests.regularizers.penalty_fit OUTPUT.json [--data-parallel]``."""
    data_parallel = "--data-parallel" in argv
    output = next(arg for arg in argv if arg != "--data-parallel")
    results = run(data_parallel)
    devices = len(keras.distribution.list_devices()) if data_parallel else 1
    with open(output, "w") as handle:
        json.dump({"backend": keras.backend.backend(), "devices": devices, "results": results}, handle)


if __name__ == "__main__":
    main(sys.argv[1:])
