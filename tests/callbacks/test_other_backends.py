"""Callbacks that read or assign variables between batches, in ``model.fit`` on JAX and PyTorch.

Keras's JAX trainer keeps the variables' values in its own state during an
epoch; these callbacks sync it first (``callbacks._monitor.sync_model_state``).
"""

from __future__ import annotations

import json

import pytest

from tests._other_backend import run_under_backend

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
    completed = run_under_backend(backend, ["-c", _SCRIPT])
    line = [text for text in completed.stdout.splitlines() if text.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    history = result["history"]
    assert len(history["grad_norm"]) == 3 and all(n > 0 for n in history["grad_norm"])
    assert len(history["loss"]) == 3 and result["finite"]
