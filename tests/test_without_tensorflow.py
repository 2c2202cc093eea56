"""On JAX and PyTorch, keras_trainkit imports and trains where TensorFlow is not installed.

Only the ``Trainer`` (TensorFlow's ``GradientTape`` loop) needs TensorFlow. The
GPU machines the step-time benchmarks ran on have JAX and PyTorch but no
TensorFlow; this is the contract those runs relied on. Each case runs in a fresh
process with ``sys.modules["tensorflow"] = None``, which makes every
``import tensorflow`` fail as it does where TensorFlow is absent.
"""

from __future__ import annotations

import pytest

from tests._other_backend import run_under_backend

pytestmark = pytest.mark.backends

SCRIPT = r'''
import sys
sys.modules["tensorflow"] = None  # every ``import tensorflow`` now fails, as where it is not installed

import numpy as np
import keras
import keras_trainkit
from keras_trainkit import callbacks, optimizers, schedules
from keras_trainkit.optimizers import transforms

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 8)).astype("float32")
y = (x @ rng.normal(size=(8, 1))).astype("float32")
made = {
    "Muon": lambda: optimizers.Muon(0.02),
    "SOAP": lambda: optimizers.SOAP(3e-3),
    "ADOPT": lambda: optimizers.ADOPT(1e-2),
    "Lookahead": lambda: optimizers.Lookahead(keras.optimizers.Adam(1e-2)),
    "TransformedOptimizer": lambda: optimizers.TransformedOptimizer(
        keras.optimizers.SGD(schedules.OneCycle(0.05, total_steps=8)),
        [transforms.SkipNonFinite(), transforms.ClipByGlobalNorm(1.0)]),
}
for name, make in made.items():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=make(), loss="mse")
    before = model.get_weights()
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0,
                        callbacks=[callbacks.TrainingMonitor(log_every_n_steps=1)])
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), (name, losses)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), before))
    assert moved > 0, name
    print(name, "loss", losses[0], "->", losses[-1])

loaded = [m for m, module in sys.modules.items() if m.split(".")[0] == "tensorflow" and module is not None]
assert loaded == [], loaded
assert "keras_trainkit.training" not in sys.modules
try:
    import keras_trainkit.training
except ImportError as error:
    assert "tensorflow" in str(error), error
    print("training refused:", error)
else:
    raise AssertionError("keras_trainkit.training imported without TensorFlow")
print("ok")
'''


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_trains_in_model_fit_without_tensorflow(backend):
    completed = run_under_backend(backend, ["-c", SCRIPT], timeout=300)
    lines = completed.stdout.splitlines()
    assert lines[-1] == "ok", completed.stdout[-2000:]
    assert sum(" loss " in line for line in lines) == 5, completed.stdout
