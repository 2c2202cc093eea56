"""examples/initialization.py standardizes the test set with the training
set's statistics."""

import importlib.util
import types
from pathlib import Path

import keras
import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "initialization.py"


def test_initialization_example_scales_the_test_set_with_the_training_statistics(monkeypatch):
    """It computed `x_test = (x_test - x.mean()) / x.std()` after `x` was standardized,
    i.e. with mean 0 and std 1: the test set kept its own offset and scale."""
    spec = importlib.util.spec_from_file_location("initialization_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rng = np.random.default_rng(0)
    x, x_test = (3.0 + 2.0 * rng.standard_normal((300, 40), dtype=np.float32) for _ in range(2))
    y, y_test = rng.integers(0, 10, 300), rng.integers(0, 10, 300)
    monkeypatch.setattr(example.tk.datasets, "load_mnist1d", lambda: ((x, y), (x_test, y_test)))
    monkeypatch.setattr(example, "INITIALIZERS", {"he": lambda: "he_normal"})
    evaluated = []
    monkeypatch.setattr(keras.Model, "fit",
                        lambda self, *a, **k: types.SimpleNamespace(history={"loss": [0.0]}))
    monkeypatch.setattr(keras.Model, "evaluate",
                        lambda self, data, *a, **k: evaluated.append(np.asarray(data)) or (0.0, 0.0))
    assert example.main(["--smoke"]) == 0
    expected = (x_test[:128] - x.mean()) / x.std()  # numpy, from the raw arrays
    assert len(evaluated) == 2  # relu and tanh
    for seen in evaluated:
        np.testing.assert_allclose(seen, expected, rtol=1e-5, atol=1e-5)
