"""The examples refuse an ``--epochs`` they would not honour, before loading any data."""

import importlib.util
from pathlib import Path

import pytest

import keras_trainkit as tk

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["custom_loop.py", "fit_integration.py", "initialization.py"])
def test_zero_epochs_is_refused_before_the_data_loads(name, monkeypatch, capsys):
    # `args.epochs or default` ran the full default (40 epochs) for --epochs 0.
    def no_data(*args, **kwargs):
        raise AssertionError("the data loaded before --epochs was checked")

    monkeypatch.setattr(tk.datasets, "load_digits", no_data)
    monkeypatch.setattr(tk.datasets, "load_mnist1d", no_data)
    with pytest.raises(SystemExit) as exit_:
        _load(name).main(["--epochs", "0"])
    assert exit_.value.code == 2
    assert "--epochs: must be >= 1, got 0" in capsys.readouterr().err
