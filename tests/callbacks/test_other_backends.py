"""Callbacks that read or assign variables between batches, in ``model.fit`` on JAX and PyTorch.

Keras's JAX trainer keeps the variables' values in its own state during an
epoch; these callbacks sync it first (``callbacks._monitor.sync_model_state``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import json, sys, tempfile
import keras, numpy as np
import keras_trainkit as tk
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
model.compile(keras.optimizers.Adam(1e-2), "mse")
x = np.random.default_rng(0).random((64, 4)).astype("float32")
y = x.sum(1, keepdims=True)
spikes = tk.callbacks.SpikeDetection(policy="restore", snapshot_every=2, atol=1e-9, rtol=None, warmup=1)
callbacks = [
    tk.callbacks.GradientClipping(max_norm=1.0),
    spikes,
    tk.callbacks.TrainingMonitor(log_dir=tempfile.mkdtemp(), log_every_n_steps=2),
    tk.callbacks.EarlyStopping(monitor="loss", patience=3, check_every_n_steps=3, restore_best_weights=True),
]
history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=callbacks)
weights = [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]
print("RESULT", json.dumps({"history": history.history, "finite": all(np.isfinite(w).all() for w in weights)}))
"""


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_batch_callbacks_in_fit(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    environment = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=environment,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = [text for text in completed.stdout.splitlines() if text.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    history = result["history"]
    assert len(history["grad_norm"]) == 3 and all(n > 0 for n in history["grad_norm"])
    assert len(history["loss"]) == 3 and result["finite"]
