"""Run Python under another Keras backend in a fresh process (the backend is chosen at import)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_under_backend(backend: str, argv, timeout: int = 300, extra_env=None) -> subprocess.CompletedProcess:
    """``python ARGV`` from the repository root with ``KERAS_BACKEND=backend`` (and
    ``extra_env``); skips the calling test when the backend's package is not installed,
    fails it when the process does."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    environment = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT),
                   "TF_CPP_MIN_LOG_LEVEL": "3", **(extra_env or {})}
    completed = subprocess.run([sys.executable, *argv], cwd=ROOT, env=environment,
                               capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed
