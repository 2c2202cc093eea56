"""`trainkit demo` on JAX and PyTorch: one line says it trains with model.fit, and the run completes."""

from __future__ import annotations

import json

import pytest

from tests._other_backend import run_under_backend


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_demo_falls_back_to_model_fit(backend, tmp_path):
    out = tmp_path / "demo"
    completed = run_under_backend(
        backend, ["-m", "keras_trainkit.cli", "demo", "--models", "mlp", "--epochs", "1", "--subset",
                  "300", "--seed", "1", "--verbose", "0", "--output", str(out)], timeout=600)
    notes = [line for line in completed.stdout.splitlines() if "training with model.fit" in line]
    assert len(notes) == 1 and f"the Keras backend is '{backend}'" in notes[0], completed.stdout
    assert "Test accuracy on mnist1d" in completed.stdout
    result = json.loads((out / "results.json").read_text())["results"][0]
    assert result["epochs_run"] == 1 and 0.0 <= result["test_accuracy"] <= 1.0
    assert list((out / "tensorboard" / "mlp" / "train").glob("events.out.tfevents.*"))
