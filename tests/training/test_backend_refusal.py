"""On JAX and PyTorch the Trainer (a TensorFlow ``GradientTape`` loop) refuses at construction, saying what to use."""

from __future__ import annotations

import pytest

from tests._other_backend import run_under_backend

_SCRIPT = """
import keras
from keras_trainkit.training import Trainer
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
for make in (lambda: Trainer(model, "sgd", "mse"), lambda: Trainer.from_compiled(model)):
    model.compile(optimizer="sgd", loss="mse")
    try:
        make()
    except RuntimeError as error:
        print("REFUSED:", error)
    else:
        print("ACCEPTED")
"""


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_trainer_refuses_other_backends(backend):
    completed = run_under_backend(backend, ["-c", _SCRIPT])
    lines = [line for line in completed.stdout.splitlines() if line.startswith(("REFUSED", "ACCEPTED"))]
    assert len(lines) == 2 and all(line.startswith("REFUSED") for line in lines), completed.stdout
    for line in lines:
        assert f"the Keras backend is '{backend}'" in line
        assert "model.fit" in line and "GradientClipping" in line and "KERAS_BACKEND=tensorflow" in line


def test_trainer_accepts_tensorflow():
    import keras

    from keras_trainkit.training import Trainer

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the Trainer runs on the TensorFlow backend")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    assert Trainer(model, "sgd", "mse", jit_compile=False).model is model
