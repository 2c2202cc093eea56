"""`trainkit tune`, `lr-find` and `check-init` on JAX and PyTorch (`trainkit demo`: test_cli_demo_backends.py).

One process per backend runs the three commands in turn through ``cli.main``
(one interpreter start instead of three) and writes what each returned; the
test reads their output files: the search's trials, report and ensemble (a
``.keras`` file that loads and predicts on that backend), the LR finder's
suggestion and plot, the initialization check's JSON.
"""

from __future__ import annotations

import json

import pytest

from tests._other_backend import run_under_backend

pytestmark = pytest.mark.backends
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

SCRIPT = r'''
import contextlib, io, json, sys
import keras
import numpy as np
from keras_trainkit import cli

out = sys.argv[1]
statuses = {}
statuses["tune"] = cli.main(["tune", "--dataset", "digits", "--model", "mlp", "--trials", "2", "--epochs", "2",
                             "--ensemble", "2", "--output", f"{out}/tune"])
statuses["tune_optuna"] = cli.main(["tune", "--dataset", "digits", "--model", "mlp", "--trials", "2",
                                    "--epochs", "1", "--sampler", "tpe", "--ensemble", "1",
                                    "--output", f"{out}/tune_optuna"])
statuses["lr_find"] = cli.main(["lr-find", "--dataset", "digits", "--model", "mlp", "--num-steps", "20",
                                "--batch-size", "32", "--output", f"{out}/lr_find"])
report = io.StringIO()
with contextlib.redirect_stdout(report):
    statuses["check_init"] = cli.main(["check-init", "--depth", "6", "--width", "32", "--initializer",
                                       "he_normal", "--json"])
ensemble = keras.models.load_model(f"{out}/tune/ensemble_model.keras")
# The ensemble emits the log of its members' averaged probabilities (logits, like its members).
log_probabilities = keras.ops.convert_to_numpy(ensemble.predict(np.zeros((3, 8, 8, 1), "float32"), verbose=0))
json.dump({"backend": keras.backend.backend(), "statuses": statuses, "check_init": json.loads(report.getvalue()),
           "ensemble_probability_sums": np.exp(log_probabilities).sum(axis=1).tolist()}, open(f"{out}/result.json", "w"))
'''


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_tune_lr_find_and_check_init_run(backend, tmp_path):
    run_under_backend(backend, ["-c", SCRIPT, str(tmp_path)], timeout=600)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["backend"] == backend
    assert result["statuses"] == {"tune": 0, "tune_optuna": 0, "lr_find": 0, "check_init": 0}

    for search in ("tune", "tune_optuna"):
        summary = (tmp_path / search / "summary.txt").read_text()
        assert "2 trials, 0 pruned, 0 failed" in summary, summary
        best = json.loads((tmp_path / search / "best_hyperparameters.json").read_text())
        assert best, search
    assert result["ensemble_probability_sums"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)

    lr_find = json.loads((tmp_path / "lr_find" / "lr_find.json").read_text())
    assert lr_find["model"] == "mlp" and 0 < lr_find["suggestion"] < 10
    assert (tmp_path / "lr_find" / "lr_find.png").read_bytes()[:8] == PNG_SIGNATURE

    assert result["check_init"]["passed"] is True
