"""KerasTuner's oracle server is unauthenticated gRPC: never offered on every interface."""

import re
from pathlib import Path

from keras_trainkit.tuning import parallel

ROOT = Path(__file__).resolve().parents[2]


def test_multi_host_recipe_warns_and_binds_no_wildcard_address():
    text = (ROOT / "docs" / "tuning.md").read_text(encoding="utf-8")
    section = text[text.index("### Several hosts"):text.index("## The best trials as one model")]
    addresses = re.findall(r"KERASTUNER_ORACLE_IP=(\S+)", section)
    assert addresses and "0.0.0.0" not in addresses
    words = " ".join(section.split())
    assert "no authentication" in words and "ssh -N -L" in words


def _make_tuner():  # module-level: parallel_search refuses a make_tuner it cannot pickle
    return "tuner"


def test_parallel_search_binds_the_chief_to_loopback(monkeypatch):
    started = []

    class Recorded:
        exitcode = 0

        def __init__(self, target, args):
            started.append(args)

        def start(self):
            pass

        def join(self, timeout=None):
            pass

        def is_alive(self):
            return False

    class Context:
        Process = Recorded

    monkeypatch.setattr(parallel.multiprocessing, "get_context", lambda method: Context)
    assert parallel.parallel_search(_make_tuner, parallel_trials=2, gpus=[]) == "tuner"
    roles = {args[0]: args[1] for args in started}
    assert set(roles) == {"chief", "tuner0", "tuner1"}
    assert {env["KERASTUNER_ORACLE_IP"] for env in roles.values()} == {"127.0.0.1"}
