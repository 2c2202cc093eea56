import json
import os
import subprocess
import sys
from pathlib import Path

from keras_trainkit import cli


def test_datasets_command_in_process(capsys):
    assert cli.main(["datasets", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["mnist1d"]["train_shape"] == [4000, 40]
    assert rows["digits"]["test_shape"] == [360, 8, 8, 1]
    assert all(row["num_classes"] == 10 for row in rows.values())


def test_python_dash_m_runs_the_console_script():
    result = subprocess.run(
        [sys.executable, "-m", "keras_trainkit", "datasets"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "mnist1d" in result.stdout and "(4000, 40)" in result.stdout


def test_unknown_command_fails():
    """Through the console script's entry point, which parses before TensorFlow loads."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "keras_trainkit_cli", "no-such-command"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
