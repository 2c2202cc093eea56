"""`trainkit lr-find`: in process and as a console script."""

import json
import subprocess
import sys

from keras_trainkit import cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_lr_find_in_process(tmp_path, capsys):
    status = cli.main(["lr-find", "--dataset", "mnist1d", "--model", "cnn", "--optimizer", "adam",
                       "--batch-size", "64", "--num-steps", "30", "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "suggested learning rate (valley):" in out
    png = (tmp_path / "lr_find.png").read_bytes()
    assert png[:8] == PNG_SIGNATURE and len(png) > 1000
    summary = json.loads((tmp_path / "lr_find.json").read_text())
    assert summary["model"] == "cnn" and 0 < summary["suggestion"] < 10
    assert f"{summary['suggestion']:.3g}" in out


def test_lr_find_console_script(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "keras_trainkit", "lr-find", "--dataset", "digits", "--model", "mlp",
         "--num-steps", "20", "--batch-size", "32", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "suggested learning rate" in result.stdout
    assert (tmp_path / "out" / "lr_find.png").read_bytes()[:8] == PNG_SIGNATURE


def test_lr_find_bad_argument_is_a_clean_error(capsys):
    status = cli.main(["lr-find", "--dataset", "digits", "--model", "mlp", "--num-steps", "1"])
    assert status == 2
    assert "Argument `--num-steps` must be >= 2. Received: --num-steps=1" in capsys.readouterr().err
