"""``trainkit check-init`` end to end (in process)."""

import json

from keras_trainkit import cli


def test_check_init_he_normal_passes(capsys, tmp_path):
    plot = tmp_path / "init.png"
    status = cli.main(["check-init", "--dataset", "mnist1d", "--model", "mlp", "--depth", "10",
                       "--width", "64", "--initializer", "he_normal", "--plot", str(plot), "--strict"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "dense_9" in out and "no warnings" in out
    assert plot.stat().st_size > 1000


def test_check_init_flags_zero_start_and_lsuv_passes(capsys):
    argv = ["check-init", "--depth", "20", "--width", "32", "--activation", "tanh", "--json"]
    status = cli.main(argv + ["--initializer", "zeros", "--strict"])
    report = json.loads(capsys.readouterr().out)
    assert status == 1 and not report["passed"]
    assert "identical_units" in {w["kind"] for w in report["warnings"]}
    assert cli.main(argv + ["--initializer", "lsuv"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"]


def test_check_init_bad_initializer(capsys):
    assert cli.main(["check-init", "--initializer", "no_such_init"]) == 2
    assert "no_such_init" in capsys.readouterr().err
