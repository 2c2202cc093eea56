"""`trainkit demo` on JAX and PyTorch: one line says it trains with model.fit, and the run completes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_demo_falls_back_to_model_fit(backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    out = tmp_path / "demo"
    environment = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run(
        [sys.executable, "-m", "keras_trainkit.cli", "demo", "--models", "mlp", "--epochs", "1", "--subset",
         "300", "--seed", "1", "--verbose", "0", "--output", str(out)],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    notes = [line for line in completed.stdout.splitlines() if "training with model.fit" in line]
    assert len(notes) == 1 and f"the Keras backend is '{backend}'" in notes[0], completed.stdout
    assert "Test accuracy on mnist1d" in completed.stdout
    result = json.loads((out / "results.json").read_text())["results"][0]
    assert result["epochs_run"] == 1 and 0.0 <= result["test_accuracy"] <= 1.0
    assert list((out / "tensorboard" / "mlp" / "train").glob("events.out.tfevents.*"))
