"""Callbacks that read or assign variables between batches, in ``model.fit`` on JAX and PyTorch.

Keras's JAX trainer keeps the variables' values in its own state during an
epoch; these callbacks sync it first (``callbacks._monitor.sync_model_state``).
"""

from __future__ import annotations

import json

import numpy as np
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


def _result(stdout, prefix):
    line = [text for text in stdout.splitlines() if text.startswith(prefix + " ")][-1]
    return json.loads(line[len(prefix) + 1:])


@pytest.fixture(scope="module")
def backend_runs():
    """Each backend's script output, run once: JAX's also runs ``_FROZEN_SCRIPT`` (one process)."""
    outputs = {}

    def run(backend):
        if backend not in outputs:
            script = _SCRIPT + (_FROZEN_SCRIPT if backend == "jax" else "")
            outputs[backend] = run_under_backend(backend, ["-c", script]).stdout
        return outputs[backend]

    return run


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_batch_callbacks_in_fit(backend, backend_runs):
    result = _result(backend_runs(backend), "RESULT")
    history = result["history"]
    assert len(history["grad_norm"]) == 3 and all(n > 0 for n in history["grad_norm"])
    assert len(history["loss"]) == 3 and result["finite"]


_FROZEN_SCRIPT = """
import json
import keras, numpy as np
import keras_trainkit as tk
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 4)).astype("float32")
y = rng.normal(size=(32, 1)).astype("float32")

def kernels(callbacks, learning_rate=0.05, momentum=0.0, jit=True):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate, momentum=momentum), "mse", jit_compile=jit)
    seen = []
    class Kernels(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(keras.ops.convert_to_numpy(self.model.layers[0].kernel).copy())
    model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0, callbacks=[Kernels()] + callbacks)
    return seen

def moves(seen):
    return [float(np.abs(b - a).max()) for a, b in zip(seen, seen[1:])]

schedule = lambda: keras.optimizers.schedules.ExponentialDecay(0.1, 400, 0.5)
plateau = moves(kernels([tk.callbacks.ReduceLROnPlateau(monitor="loss", factor=1e-6, patience=0,
                                                         min_delta=1e9, min_lr=0.0)], schedule()))
swa = moves(kernels([tk.callbacks.SWA(start_epoch=1, swa_learning_rate=0.0, anneal_epochs=2,
                                      anneal_strategy="linear")], schedule()))
momentum = lambda: [tk.callbacks.HyperparameterScheduler("momentum", lambda e: 0.9 if e == 0 else 0.0,
                                                         frequency="epoch")]
jitted, eager = kernels(momentum(), momentum=0.9)[-1], kernels(momentum(), momentum=0.9, jit=False)[-1]
constant = kernels([], momentum=0.9)[-1]
try:
    kernels([tk.callbacks.HyperparameterScheduler("momentum", lambda t: 0.5)], momentum=0.9)
    per_step = "trained"
except ValueError as error:
    per_step = str(error)
sweeps = []
for learning_rate in (0.01, keras.optimizers.schedules.ExponentialDecay(0.01, 400, 0.5)):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate), "mse")
    sweeps.append(tk.diagnostics.lr_find(model, (x, y), start_lr=1e-4, end_lr=1.0, num_steps=12,
                                         batch_size=8, smoothing=0.0).losses.tolist())
keras.utils.set_random_seed(1)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
    8, use_bias=False, kernel_regularizer=tk.regularizers.SpectralNorm(factor=1.0))])
model.compile(keras.optimizers.SGD(0.0), "mse")
kernel = keras.ops.convert_to_numpy(model.layers[0].kernel)
mse = float(np.mean((x @ kernel - np.repeat(y, 8, axis=1)) ** 2))
history = model.fit(x, np.repeat(y, 8, axis=1), batch_size=32, epochs=2, verbose=0).history
spectral = {"penalties": [loss - mse for loss in history["loss"]],
            "numpy": float(np.linalg.norm(kernel.astype("float64"), 2) ** 2)}
print("FROZEN", json.dumps({"spectral": spectral, "plateau": plateau, "swa": swa, "per_step": per_step, "sweeps": sweeps,
                            "momentum_vs_eager": float(np.abs(jitted - eager).max()),
                            "momentum_vs_constant": float(np.abs(jitted - constant).max())}))
"""


@pytest.mark.backends
def test_values_assigned_between_epochs_reach_the_jitted_step_on_jax(backend_runs):
    # Keras's JAX trainer freezes a variable outside its state (a HyperparameterVariable, a
    # ScaledSchedule's scale, SWA's and the LR finder's held rate) into the jitted step: before,
    # ReduceLROnPlateau over a schedule, SWA's annealing, a momentum schedule and the LR
    # finder's sweep over a schedule did not reach the step on JAX.
    result = _result(backend_runs("jax"), "FROZEN")
    assert result["plateau"][0] > 0.01 and max(result["plateau"][1:]) < 1e-6  # learning rate x 1e-6
    assert result["swa"][0] > 0.01 and result["swa"][1:] == [0.0, 0.0]  # annealed to 0 by epoch 3
    assert result["momentum_vs_eager"] < 1e-6  # jit_compile=False reads the variable at run time
    assert result["momentum_vs_constant"] > 1e-3  # the schedule changed something
    assert "jit_compile=False" in result["per_step"] and "Received: frequency='step'" in result["per_step"]
    # The LR finder sweeps a schedule's stand-in as it sweeps a float learning rate.
    float_sweep, schedule_sweep = result["sweeps"]
    assert len(float_sweep) > 3 and np.allclose(schedule_sweep, float_sweep, rtol=1e-6)


@pytest.mark.backends
def test_spectral_norm_in_jax_fit_penalizes_the_top_singular_value(backend_runs):
    # JAX's stateless jitted step hands the regularizer its kernel without a path, so no
    # power-iteration vector can be kept: before, every step iterated once from the same
    # start vector (0.98 against a true 2.99, all training long); now the SVD's exact value.
    spectral = _result(backend_runs("jax"), "FROZEN")["spectral"]
    assert np.allclose(spectral["penalties"], spectral["numpy"], rtol=1e-4)
