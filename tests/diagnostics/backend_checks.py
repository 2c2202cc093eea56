"""The initialization check, the gradient check and their CLI commands on the current Keras backend.

Run as ``python -m tests.diagnostics.backend_checks OUT.json`` with
``KERAS_BACKEND`` set (``tests/diagnostics/test_backends.py`` does, once per
backend); ``run()`` is the same in process. The models get their weights from a
NumPy generator, not from the backend's initializers, so every backend starts
from the same numbers and the statistics can be compared with TensorFlow's.
The CLI commands (``check-init``, ``lr-find``) run in the same process through
``keras_trainkit.cli.main``: one process start per backend.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np


def _mlp(zero_kernel: bool = False):
    """Dense 16 -> 32 (ReLU) -> 32 (tanh) -> 4, weights drawn by NumPy."""
    model = keras.Sequential([
        keras.Input((16,)),
        keras.layers.Dense(32, activation="relu", name="hidden1"),
        keras.layers.Dense(32, activation="tanh", name="hidden2"),
        keras.layers.Dense(4, name="logits"),
    ], name="checked_mlp")  # named: the weights' paths must not depend on models built before
    rng = np.random.default_rng(0)
    weights = [rng.normal(scale=0.3, size=tuple(w.shape)).astype("float32") for w in model.get_weights()]
    if zero_kernel:
        weights[2] = np.zeros_like(weights[2])
    model.set_weights(weights)
    return model


def _data():
    rng = np.random.default_rng(1)
    return rng.normal(size=(24, 16)).astype("float32"), rng.integers(0, 4, size=24)


def _cli(argv) -> tuple[int, str]:
    from keras_trainkit import cli

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = cli.main(argv)
    return status, buffer.getvalue()


def _commands(folder: Path) -> dict:
    status, out = _cli(["check-init", "--dataset", "digits", "--depth", "3", "--width", "16",
                        "--batch-size", "64", "--json"])
    check_init = {"status": status, **json.loads(out)} if status == 0 else {"status": status, "out": out}
    status, out = _cli(["lr-find", "--dataset", "digits", "--model", "mlp", "--num-steps", "12",
                        "--batch-size", "32", "--output", str(folder)])
    summary = json.loads((folder / "lr_find.json").read_text()) if status == 0 else {}
    return {
        "check_init": check_init,
        "lr_find": {"status": status, "steps": len(summary.get("learning_rates", [])),
                    "suggestion": summary.get("suggestion"),
                    "png": (folder / "lr_find.png").is_file()},
    }


def run() -> dict:
    """Every result on the current backend, as JSON-ready values."""
    from keras_trainkit.diagnostics import check_initialization, gradient_check

    x, y = _data()
    labelled = check_initialization(_mlp(), x, y)
    surrogate = check_initialization(_mlp(), x)
    symmetric = check_initialization(_mlp(zero_kernel=True), x, y)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    grads = gradient_check(_mlp(), x, y, loss, num_coordinates=12, float64=False)
    with tempfile.TemporaryDirectory() as folder:
        commands = _commands(Path(folder))
    return {
        "backend": keras.backend.backend(),
        "init_labelled": labelled.to_dict(),
        "init_surrogate": surrogate.to_dict(),
        "init_symmetric_kinds": sorted(symmetric.kinds()),
        "gradient_check": {"passed": grads.passed, "dtype": grads.dtype,
                           "max_relative_error": grads.max_relative_error,
                           "analytic": {f"{c.weight}{list(c.index)}": c.analytic for c in grads.coordinates}},
        **commands,
    }


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(run()))
