"""The four examples run in their short smoke mode (in parallel subprocesses)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "polynomial_fit.py": "Result: y =",
    "computation_graph.py": "GradientTape agrees with the chain rule at every point.",
    "custom_loop.py": "test accuracy",
    "fit_integration.py": "test accuracy",
}


@pytest.fixture(scope="module")
def runs():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = {
        name: subprocess.Popen([sys.executable, str(ROOT / "examples" / name), "--smoke"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=ROOT)
        for name in EXPECTED
    }
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results[name] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_smoke(runs, name):
    code, out, err = runs[name]
    assert code == 0, err[-3000:]
    assert EXPECTED[name] in out


def test_polynomial_fit_approaches_least_squares(runs):
    out = runs["polynomial_fit.py"][1]
    line = next(l for l in out.splitlines() if l.startswith("Result:"))
    b = float(line.split("+")[1].split("x")[0])
    assert abs(b - 0.857) < 0.05
