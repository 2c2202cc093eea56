"""examples/initialization.py runs in its smoke mode."""

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "initialization.py"


def test_initialization_example_smoke():
    env = {**os.environ, "KERAS_TRAINKIT_SMOKE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, str(EXAMPLE), "--smoke"], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for word in ("relu MLP", "tanh MLP", "uniform[-1,1]", "glorot", "he", "orthogonal", "geometric",
                 "lsuv", "act_9", "test acc"):
        assert word in out, word
    # the claim of the notes, visible even in smoke mode: uniform[-1, 1] explodes a deep ReLU net
    relu_table = out.split("tanh MLP")[0]
    row = next(line for line in relu_table.splitlines() if line.startswith("act_9"))
    assert float(row.split()[1]) > 100 * float(row.split()[3])  # uniform vs He
