"""scripts/make_backend_table.py: test ids to components, cells, and the --check verdict."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_backend_table", ROOT / "scripts" / "make_backend_table.py")
table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table)

COMPONENTS = {"optimizers": ["AdEMAMix", "RAdam", "SAM"], "transforms": ["AutoClip", "ClipByValue"],
              "schedules": ["CosineAnnealing", "CosineAnnealingWarmRestarts", "StepDecay", "Warmup",
                            "WarmupStableDecay"],
              "diagnostics": ["check_initialization", "gradient_check", "lr_find"]}


@pytest.mark.parametrize("path, name, expected", [
    ("tests/conformance/test_conformance.py", "test_get_finds_class[optimizers.RAdam]", [("optimizers", "RAdam")]),
    ("tests/optimizers/test_reference_ademamix.py", "test_matches_optax", [("optimizers", "AdEMAMix")]),
    ("tests/optimizers/test_backends.py", "test_same_numbers_as_tensorflow[SAM-jax]", [("optimizers", "SAM")]),
    ("tests/optimizers/test_transforms_reference.py", "test_autoclip_matches_numpy[16-quadratic]",
     [("transforms", "AutoClip")]),
    ("tests/optimizers/test_transforms_reference.py", "test_clip_by_value_matches_optax[quadratic]",
     [("transforms", "ClipByValue")]),
    ("tests/schedules/test_closed_form.py", "test_warmup_stable_decay_closed_form[linear]",
     [("schedules", "WarmupStableDecay")]),
    ("tests/schedules/test_closed_form.py", "test_warmup_closed_form[True-linear]", [("schedules", "Warmup")]),
    ("tests/schedules/test_against_optax.py", "test_warm_restarts_match_optax_sgdr_schedule[2.0-0.8-0.1]",
     [("schedules", "CosineAnnealingWarmRestarts")]),
    ("tests/schedules/test_closed_form.py", "test_vectorized_equals_step_by_step[StepDecay]",
     [("schedules", "StepDecay")]),
    ("tests/diagnostics/test_backends.py", "test_check_init_and_lr_find_commands_run[torch]",
     [("diagnostics", "check_initialization"), ("diagnostics", "lr_find")]),
    ("tests/conformance/test_conformance.py", "test_top_level_exposes_sub_packages", []),
])
def test_components_of(path, name, expected):
    assert table.components_of(path, name, COMPONENTS) == expected


def test_cells():
    assert table.cell([]) == "-"
    assert table.cell([("passed", ""), ("skipped", "")]) == "pass (1)"
    assert table.cell([("passed", ""), ("failed", "")]) == "**FAIL** (1 of 2)"
    assert table.cell([("xfailed", "reason: needs TensorFlow")]) == "no: needs TensorFlow"
    assert table.cell([("passed", ""), ("xfailed", "needs TensorFlow")]) == "partly: needs TensorFlow"
    assert table.cell([("skipped", "")]) == "skipped"


def test_check_fails_when_the_page_disagrees(tmp_path):
    junit = tmp_path / "jax.xml"
    junit.write_text(
        '<testsuites><testsuite name="jax">'
        '<testcase classname="tests.conformance.test_conformance" name="test_get_finds_class[optimizers.RAdam]"/>'
        '<testcase classname="tests.optimizers.test_reference_radam" name="test_matches_optax">'
        '<failure message="boom"/></testcase>'
        '</testsuite></testsuites>')
    index = tmp_path / "index.md"
    index.write_text("# docs\n")
    arguments = ["--junit", f"jax={junit}", "--index", str(index)]
    assert table.main(arguments + ["--check"]) == 1
    assert table.main(arguments) == 0
    text = index.read_text()
    assert "| optimizers: `RAdam` | - | **FAIL** (1 of 2) | - |" in text
    assert table.main(arguments + ["--check"]) == 0
    index.write_text(text.replace("**FAIL** (1 of 2)", "pass (2)"))
    assert table.main(arguments + ["--check"]) == 1
