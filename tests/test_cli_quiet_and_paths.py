"""The `trainkit` console script: fast answers without TensorFlow, no TensorFlow C++
start-up lines unless `--verbose`, and output paths checked before any work."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keras_trainkit import cli
from keras_trainkit.commands import check_init, demo, lr_find, tune

ROOT = Path(__file__).resolve().parents[1]

# The shapes of TensorFlow's C++ log lines: absl's "I0000 00:00:... file.cc:31] ...",
# the line absl prints before its logging is set up, and the start-up messages by name.
CXX_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d|absl::InitializeLog|cpu_feature_guard|"
                          r"cudart_stub|cuInit|oneDNN custom operations", re.MULTILINE)


def _console_script(*argv, timeout=600):
    """Run ``trainkit ARGV`` as a user would: a fresh process, no TF_CPP_MIN_LOG_LEVEL."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "keras_trainkit_cli", *argv], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


_WITHOUT_TENSORFLOW = """
import sys
from keras_trainkit_cli import main
out = sys.argv[1]
statuses = []
for argv in (["datasets"], ["demo", "--epochs", "0"], ["check-init", "--plot", out],
             ["lr-find", "--num-steps", "1"], ["tune", "--trials", "0"], ["--help"]):
    try:
        statuses.append(main(argv))
    except SystemExit as done:
        statuses.append(done.code)
print("statuses", statuses)
print("loaded", sorted(m for m in ("tensorflow", "keras", "keras_tuner") if m in sys.modules))
"""


def test_help_datasets_and_argument_errors_answer_without_tensorflow(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", _WITHOUT_TENSORFLOW, str(tmp_path)],
                            capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "statuses [0, 2, 2, 2, 2, 0]" in result.stdout
    assert "loaded []" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("trainkit ")]
    assert [line.split(":")[0] for line in errors] == [
        "trainkit demo", "trainkit check-init", "trainkit lr-find", "trainkit tune"]
    assert "Traceback" not in result.stderr and not CXX_LOG_LINE.search(result.stderr)


@pytest.mark.slow
def test_lr_find_prints_no_tensorflow_start_up_lines(tmp_path):
    result = _console_script("lr-find", "--dataset", "digits", "--model", "mlp", "--num-steps", "5",
                             "--batch-size", "32", "--output", str(tmp_path / "lr"))
    assert result.returncode == 0, result.stderr
    assert "suggested learning rate" in result.stdout
    assert not CXX_LOG_LINE.search(result.stderr), result.stderr
    assert not CXX_LOG_LINE.search(result.stdout), result.stdout


@pytest.mark.slow
def test_demo_prints_no_tensorflow_start_up_lines(tmp_path):
    result = _console_script("demo", "--dataset", "digits", "--models", "mlp", "--epochs", "1",
                             "--subset", "200", "--verbose", "0", "--output", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "mlp" in result.stdout.lower()
    assert not CXX_LOG_LINE.search(result.stderr), result.stderr
    assert not CXX_LOG_LINE.search(result.stdout), result.stdout


@pytest.mark.slow
def test_verbose_lets_tensorflow_speak(tmp_path):
    result = _console_script("--verbose", "check-init", "--dataset", "digits", "--depth", "2",
                             "--width", "8", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    assert "check-init: mlp depth 2" in result.stdout
    if not CXX_LOG_LINE.search(result.stderr):
        pytest.skip("TensorFlow printed no C++ start-up line on this machine")


def _no_work(monkeypatch, module):
    def refuse(args):
        raise AssertionError("the command started its work before checking its paths")

    monkeypatch.setattr(module, "run", refuse)


@pytest.mark.parametrize("argv, module", [
    (["demo", "--output", "{file}/sub"], demo),
    (["lr-find", "--output", "{file}"], lr_find),
    (["tune", "--output", "{file}/search"], tune),
    (["check-init", "--plot", "{folder}"], check_init),
    (["check-init", "--plot", "{file}/init.png"], check_init),
])
def test_unwritable_output_is_one_error_line_before_any_work(tmp_path, capsys, monkeypatch,
                                                             argv, module):
    (tmp_path / "a_file").write_text("not a folder")
    _no_work(monkeypatch, module)
    argv = [a.format(file=tmp_path / "a_file", folder=tmp_path) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"trainkit {argv[0]}: error: Argument `{argv[1]}`")
    assert f"Received: {argv[1]}=" in err[0]


def test_missing_folders_are_created_and_said(tmp_path, capsys, monkeypatch):
    # check-init creates the plot's folder once its names passed (they need TensorFlow), in
    # `run`, before the data: its work starts with loading them.
    from keras_trainkit import datasets

    def refuse(*args, **kwargs):
        raise AssertionError("the command started its work before creating its folder")

    monkeypatch.setattr(datasets, "load", refuse)
    plot = tmp_path / "new" / "deeper" / "init.png"
    with pytest.raises(AssertionError, match="started its work"):
        cli.main(["check-init", "--plot", str(plot)])
    assert plot.parent.is_dir() and not plot.exists()
    err = capsys.readouterr().err
    assert f"trainkit check-init: created folder {plot.parent}" in err
    assert "1 missing parent folder" in err

    _no_work(monkeypatch, demo)
    output = tmp_path / "runs" / "demo"
    with pytest.raises(AssertionError, match="started its work"):
        cli.main(["demo", "--output", str(output)])
    assert output.is_dir()
    assert f"trainkit demo: created folder {output}" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="started its work"):  # exists now: nothing said
        cli.main(["demo", "--output", str(output)])
    assert "created" not in capsys.readouterr().err
