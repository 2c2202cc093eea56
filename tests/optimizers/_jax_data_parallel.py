"""Our optimizers, schedules and callbacks under ``keras.distribution.DataParallel`` on JAX.

Run by ``tests/optimizers/test_jax_data_parallel.py`` in one subprocess with
``KERAS_BACKEND=jax`` and ``XLA_FLAGS=--xla_force_host_platform_device_count=2``::

    python -m tests.optimizers._jax_data_parallel results.json [--all] [CASE ...]

Each case trains ``backend_fit``'s small Dense model from the same initial
weights on the same fixed batches twice with ``model.fit`` (``jit_compile``
left at its default, XLA on JAX): once on one device (no distribution) and
once under ``DataParallel`` over both host devices (the global batch of 8 is
split 4 + 4, the gradients all-reduced). It records both runs' losses and
final weights and, for the data-parallel run, on how many devices the model's
and the optimizer's variables live. A failure is recorded as text, so one run
reports every case.
"""

from __future__ import annotations

import json
import sys
import time

import keras
import numpy as np

import keras_trainkit.optimizers as optimizers
from keras_trainkit.callbacks import SWA, EarlyStopping, GradientClipping
from keras_trainkit.schedules import OneCycle
from tests.optimizers import backend_fit

EPOCHS = 6
BATCH = backend_fit.BATCH  # global batch: 4 examples per device
STEPS = EPOCHS * backend_fit.BATCHES
# backend_fit's EAGER-only and SAM cases need no exemption: every case runs the same way here.
# Cases whose model is wrapped (SAM: SAMModel computes the second gradient).
WRAPPERS = backend_fit.MODEL_WRAPPERS


def _extra_cases():
    """``{name: (optimizer factory, callbacks factory)}`` beyond ``backend_fit.cases()``."""
    return {
        "TransformedOptimizer-skip": (
            lambda: optimizers.TransformedOptimizer(
                optimizers.RAdam(0.01), [optimizers.ClipByGlobalNorm(0.5), optimizers.SkipNonFinite()]
            ),
            list,
        ),
        "Adan-OneCycle": (
            lambda: optimizers.Adan(OneCycle(0.02, total_steps=STEPS)),
            list,
        ),
        "callbacks-GradientClipping-EarlyStopping-SWA": (
            lambda: keras.optimizers.Adam(0.01),
            lambda: [
                GradientClipping("global_norm", max_norm=0.5),
                EarlyStopping(monitor="loss", patience=2),
                SWA(start_epoch=2),
            ],
        ),
    }


# The cases run by default: about 40 CPU-seconds of the ~80 all cases take (plus ~10 s to start
# the process). One of each kind: element-wise (Adan, LARS, RAdam with gradient accumulation),
# wrappers (Lookahead, LayerwiseLearningRate, SAM through SAMModel, TransformedOptimizer),
# control flow (Prodigy, ScheduleFree), matrix (Shampoo, SOAP), a schedule and the callbacks.
# ``--all`` (or KERAS_TRAINKIT_DATA_PARALLEL_ALL=1 for the test) runs every case.
DEFAULT_CASES = (
    "Adan", "LARS", "RAdam-accumulation", "Lookahead-RAdam", "LayerwiseLearningRate-Yogi", "SAM",
    "TransformedOptimizer-skip", "Prodigy", "ScheduleFree", "Shampoo", "SOAP", "Adan-OneCycle",
    "callbacks-GradientClipping-EarlyStopping-SWA",
)


def cases(everything: bool = True) -> dict:
    """``{name: (optimizer factory, callbacks factory)}``: every case, or ``DEFAULT_CASES``."""
    found = {name: (make, list) for name, make in backend_fit.cases().items()}
    found.update(_extra_cases())
    return found if everything else {name: found[name] for name in DEFAULT_CASES}


def _devices(variable) -> int:
    return len(variable.value.sharding.device_set)


def fit(make, make_callbacks, wrapper, distributed: bool) -> dict:
    """One training run; the distribution is set around the model's construction and fit."""
    distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices()) if distributed else None
    keras.distribution.set_distribution(distribution)
    try:
        x, y, weights = backend_fit.data()
        trained = backend_fit.model(weights, wrapper)
        trained.compile(optimizer=make(), loss="mse")
        history = trained.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                              callbacks=make_callbacks())
        result = {"loss": [float(v) for v in history.history["loss"]],
                  "weights": backend_fit._arrays(trained.get_weights())}
        result["weight_devices"] = sorted({_devices(v) for v in trained.trainable_variables})
        result["optimizer_devices"] = sorted({_devices(v) for v in trained.optimizer.variables})
        if distributed:
            result["mesh_devices"] = int(np.prod(distribution.device_mesh.shape))
        return result
    finally:
        keras.distribution.set_distribution(None)


def run(names=None, everything=False) -> dict:
    results = {}
    for name, (make, make_callbacks) in cases(everything or bool(names)).items():
        if names and name not in names:
            continue
        started = time.process_time()
        try:
            wrapper = WRAPPERS.get(name)
            record = {"single": fit(make, make_callbacks, wrapper, distributed=False),
                      "parallel": fit(make, make_callbacks, wrapper, distributed=True), "ok": True}
        except Exception as error:  # noqa: BLE001 - reported per case, the run goes on
            record = backend_fit.failure_record(error)
        record["cpu_seconds"] = time.process_time() - started
        results[name] = record
    return results


def main(argv):
    import jax

    everything = "--all" in argv
    output, *names = [arg for arg in argv if arg != "--all"]
    results = run(set(names) or None, everything)
    with open(output, "w") as handle:
        json.dump({"backend": keras.backend.backend(), "jax_devices": len(jax.devices()),
                   "results": results}, handle)


if __name__ == "__main__":
    main(sys.argv[1:])
