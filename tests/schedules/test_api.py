"""Argument validation, ``get()`` (ours and Keras's), serialization, docstrings, plots."""

import inspect
import json
import re

import keras
import numpy as np
import pytest

import keras_trainkit
from keras_trainkit import schedules
from keras_trainkit.schedules._registry import REGISTRY

# (class, valid kwargs, bad kwargs, the argument named in the message)
BAD_ARGUMENTS = [
    (schedules.StepDecay, dict(initial_learning_rate=0.1, step_size=10), dict(step_size=-10), "step_size"),
    (schedules.StepDecay, dict(initial_learning_rate=0.1, step_size=10), dict(gamma=0.0), "gamma"),
    (schedules.StepDecay, dict(initial_learning_rate=0.1, step_size=10), dict(initial_learning_rate=0.0),
     "initial_learning_rate"),
    (schedules.LinearDecay, dict(initial_learning_rate=0.1, decay_steps=10), dict(decay_steps=0), "decay_steps"),
    (schedules.LinearDecay, dict(initial_learning_rate=0.1, decay_steps=10), dict(alpha=1.5), "alpha"),
    (schedules.CosineAnnealing, dict(initial_learning_rate=0.1, decay_steps=10), dict(decay_steps=-5),
     "decay_steps"),
    (schedules.CosineAnnealing, dict(initial_learning_rate=0.1, decay_steps=10), dict(alpha=-0.1), "alpha"),
    (schedules.CosineAnnealingWarmRestarts, dict(initial_learning_rate=0.1, first_decay_steps=10),
     dict(t_mul=0.5), "t_mul"),
    (schedules.CosineAnnealingWarmRestarts, dict(initial_learning_rate=0.1, first_decay_steps=10),
     dict(m_mul=0.0), "m_mul"),
    (schedules.OneCycle, dict(max_learning_rate=0.1, total_steps=100), dict(pct_start=0.0), "pct_start"),
    (schedules.OneCycle, dict(max_learning_rate=0.1, total_steps=100), dict(pct_start=1.0), "pct_start"),
    (schedules.OneCycle, dict(max_learning_rate=0.1, total_steps=100), dict(pct_start=0.005), "pct_start"),
    (schedules.OneCycle, dict(max_learning_rate=0.1, total_steps=100), dict(pct_start=0.6, three_phase=True),
     "pct_start"),
    (schedules.OneCycle, dict(max_learning_rate=0.1, total_steps=100), dict(max_learning_rate=0.0),
     "max_learning_rate"),
    (schedules.OneCycle, dict(max_learning_rate=0.1, total_steps=100), dict(max_learning_rate=-1.0),
     "max_learning_rate"),
    (schedules.OneCycle, dict(max_learning_rate=0.1, total_steps=100), dict(total_steps=-100), "total_steps"),
    (schedules.OneCycle, dict(max_learning_rate=0.1, total_steps=100), dict(anneal_strategy="cosine"),
     "anneal_strategy"),
    (schedules.OneCycle, dict(max_learning_rate=0.1, total_steps=100), dict(div_factor=0.0), "div_factor"),
    (schedules.CyclicalLearningRate, dict(initial_learning_rate=0.01, maximal_learning_rate=0.1, step_size=5),
     dict(maximal_learning_rate=0.01), "maximal_learning_rate"),
    (schedules.CyclicalLearningRate, dict(initial_learning_rate=0.01, maximal_learning_rate=0.1, step_size=5),
     dict(mode="triangle"), "mode"),
    (schedules.CyclicalLearningRate, dict(initial_learning_rate=0.01, maximal_learning_rate=0.1, step_size=5),
     dict(step_size_down=-1), "step_size_down"),
    (schedules.InverseSqrtDecay, dict(learning_rate=0.01, warmup_steps=5), dict(warmup_steps=-5), "warmup_steps"),
    (schedules.InverseSqrtDecay, dict(learning_rate=0.01, warmup_steps=5), dict(start_learning_rate=0.1),
     "start_learning_rate"),
    (schedules.Warmup, dict(schedule=0.1, warmup_steps=5), dict(warmup_steps=-1), "warmup_steps"),
    (schedules.Warmup, dict(schedule=0.1, warmup_steps=5), dict(warmup_type="exponential", start_learning_rate=0.0),
     "start_learning_rate"),
    (schedules.Warmup, dict(schedule=0.1, warmup_steps=5), dict(schedule=-0.1), "schedule"),
    (schedules.SequentialSchedule, dict(schedules=[0.1, 0.01], boundaries=[5]), dict(boundaries=[5, 9]),
     "boundaries"),
    (schedules.SequentialSchedule, dict(schedules=[0.1, 0.01, 0.001], boundaries=[5, 9]), dict(boundaries=[9, 5]),
     "boundaries"),
    (schedules.SequentialSchedule, dict(schedules=[0.1, 0.01], boundaries=[5]), dict(boundaries=[-5]),
     "boundaries"),
    (schedules.WarmupStableDecay, dict(learning_rate=0.1, total_steps=100, warmup_steps=10, decay_steps=20),
     dict(decay_steps=95), "decay_steps"),
    (schedules.WarmupStableDecay, dict(learning_rate=0.1, total_steps=100, warmup_steps=10, decay_steps=20),
     dict(warmup_steps=-1), "warmup_steps"),
    (schedules.WarmupStableDecay, dict(learning_rate=0.1, total_steps=100, warmup_steps=10, decay_steps=20),
     dict(decay_type="sqrt"), "decay_type"),
]


@pytest.mark.parametrize(
    "cls, valid, bad, name", BAD_ARGUMENTS, ids=[f"{c.__name__}-{n}-{i}" for i, (c, _, _, n) in enumerate(BAD_ARGUMENTS)]
)
def test_bad_argument_raises_value_error_naming_it(cls, valid, bad, name):
    cls(**valid)  # the valid set is valid
    with pytest.raises(ValueError, match=rf"`{name}(\[\d+\])?` .*Received: {name}") as info:
        cls(**{**valid, **bad})
    message = str(info.value)
    # The offending value is printed (a list element for list arguments).
    value = bad[name]
    shown = [repr(value)] + ([repr(v) for v in value] if isinstance(value, list) else [])
    assert any(f"={v}" in message for v in shown), message


@pytest.mark.parametrize(
    "build",
    [
        lambda: schedules.StepDecay(0.1, step_size=2.5),
        lambda: schedules.OneCycle("0.1", 100),
        lambda: schedules.OneCycle(0.1, 100, three_phase=1),
        lambda: schedules.Warmup(lambda step: 0.1, 10),
        lambda: schedules.SequentialSchedule(0.1, boundaries=[]),
    ],
)
def test_wrong_types_raise_type_error(build):
    with pytest.raises(TypeError, match="Received:"):
        build()


KERAS_SCHEDULES = {
    "ExponentialDecay": dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5),
    "PiecewiseConstantDecay": dict(boundaries=[10, 20], values=[0.1, 0.01, 0.001]),
    "PolynomialDecay": dict(initial_learning_rate=0.1, decay_steps=10),
    "InverseTimeDecay": dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5),
    "CosineDecay": dict(initial_learning_rate=0.1, decay_steps=10, warmup_target=0.2, warmup_steps=5),
    "CosineDecayRestarts": dict(initial_learning_rate=0.1, first_decay_steps=10),
}


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("name", sorted(KERAS_SCHEDULES))
def test_get_builds_keras_schedules_from_name_and_config(name):
    kwargs = KERAS_SCHEDULES[name]
    cls = getattr(keras.optimizers.schedules, name)
    assert getattr(schedules, name) is cls and name in schedules.__all__
    reference = cls(**kwargs)
    for spelling in (name, _snake(name), name.lower()):
        built = schedules.get(spelling, **kwargs)
        assert type(built) is cls
        assert built.get_config() == reference.get_config()
    from_dict = schedules.get({"class_name": name, "config": reference.get_config()})
    assert type(from_dict) is cls and from_dict.get_config() == reference.get_config()
    serialized = keras.saving.serialize_keras_object(reference)
    assert schedules.get(serialized).get_config() == reference.get_config()
    np.testing.assert_allclose(float(schedules.get(spelling, **kwargs)(7)), float(reference(7)))


def test_get_merges_kwargs_into_a_keras_config_dict():
    built = schedules.get({"class_name": "ExponentialDecay", "config": KERAS_SCHEDULES["ExponentialDecay"]},
                          decay_rate=0.25)
    assert built.decay_rate == 0.25


def test_get_resolves_our_schedules_by_name_and_alias_and_rejects_unknown():
    assert type(schedules.get("one_cycle", max_learning_rate=0.1, total_steps=50)) is schedules.OneCycle
    assert type(schedules.get("1cycle", max_learning_rate=0.1, total_steps=50)) is schedules.OneCycle
    assert type(schedules.get("sgdr", initial_learning_rate=0.1, first_decay_steps=5)) is \
        schedules.CosineAnnealingWarmRestarts
    assert type(schedules.get("wsd", learning_rate=0.1, total_steps=10, warmup_steps=1, decay_steps=2)) is \
        schedules.WarmupStableDecay
    with pytest.raises(ValueError, match="Received: identifier='no_such_schedule'"):
        schedules.get("no_such_schedule")
    with pytest.raises(TypeError):
        schedules.get("exponential_decay")  # Keras's own: required arguments missing


def test_nested_schedules_round_trip_through_json():
    nested = schedules.Warmup(
        schedules.SequentialSchedule(
            [
                schedules.CosineAnnealing(0.1, 100, alpha=0.1),
                keras.optimizers.schedules.ExponentialDecay(0.01, 50, 0.5),
                0.001,
            ],
            boundaries=[100, 300],
        ),
        warmup_steps=20,
        warmup_type="cosine",
        start_learning_rate=1e-4,
    )
    text = json.dumps(keras.saving.serialize_keras_object(nested))
    rebuilt = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(rebuilt) is schedules.Warmup
    assert type(rebuilt.schedule.schedules[1]) is keras.optimizers.schedules.ExponentialDecay
    grid = np.arange(0, 500, 7)
    np.testing.assert_array_equal(np.asarray(rebuilt(grid)), np.asarray(nested(grid)))
    # Config dicts are accepted in the constructor too.
    again = schedules.Warmup(keras.saving.serialize_keras_object(nested.schedule), warmup_steps=20)
    assert type(again.schedule) is schedules.SequentialSchedule


OURS = [
    "CosineAnnealing", "CosineAnnealingWarmRestarts", "CyclicalLearningRate", "InverseSqrtDecay", "LinearDecay",
    "OneCycle", "SequentialSchedule", "StepDecay", "Warmup", "WarmupStableDecay",
]


@pytest.mark.parametrize("name", OURS)
def test_docstrings_state_the_counting_convention_and_the_formula(name):
    doc = inspect.getdoc(REGISTRY.classes[name])
    flat = " ".join(doc.split())
    assert "counts optimizer updates" in flat, name
    assert "not one micro-batch" in flat and "epochs are never counted" in flat, name
    for section in ("Args:", "Example:", "lr(t)"):
        assert section in doc, (name, section)
    assert re.search(r"Reference|et al\.", doc), name


def test_plot_schedule_writes_a_png_and_is_exported_twice(tmp_path):
    from matplotlib.image import imread

    assert keras_trainkit.diagnostics.plot_schedule is schedules.plot_schedule
    assert "plot_schedule" in keras_trainkit.diagnostics.__all__
    path = schedules.plot_schedule(schedules.OneCycle(0.1, 500), 500, tmp_path / "sub" / "one_cycle.png")
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[:2] == (300, 600)
    assert image[..., :3].std() > 0.05  # something was drawn


def test_plot_schedule_handles_non_vectorized_schedules_and_constants(tmp_path):
    # Keras's CosineDecay with warm-up uses ops.cond, so it cannot take a vector.
    keras_schedule = keras.optimizers.schedules.CosineDecay(0.0, 50, warmup_target=0.1, warmup_steps=10)
    got = schedules.schedule_values(keras_schedule, 60)
    expected = [float(keras_schedule(s)) for s in range(60)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert schedules.schedule_values(0.01, 3).tolist() == [0.01, 0.01, 0.01]
    schedules.plot_schedule(keras_schedule, 60, tmp_path / "k.png", log_scale=False, title="Keras")
    assert (tmp_path / "k.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="Received: steps=0"):
        schedules.plot_schedule(keras_schedule, 0, tmp_path / "x.png")


def test_docs_plot_script_writes_every_png(tmp_path):
    import importlib.util
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("plot_schedules", root / "scripts" / "plot_schedules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Drawing all 13 takes ~10 s on a busy 2-core machine: draw two kinds, check all names.
    written = module.main(["--out", str(tmp_path), "--only", "one_cycle", "warmup_types"])
    assert [pathlib.Path(p).name for p in written] == ["one_cycle.png", "warmup_types.png"]
    for path in written:
        assert pathlib.Path(path).read_bytes()[:4] == b"\x89PNG"
    docs = (root / "docs" / "schedules.md").read_text()
    for stem in module.figures():
        name = f"{stem}.png"
        assert f"img/schedules/{name}" in docs, f"{name} is not shown in docs/schedules.md"
        assert (root / "docs" / "img" / "schedules" / name).exists(), f"{name} not committed"


@pytest.mark.parametrize(
    "module",
    ["_common", "cosine", "cyclical", "decay", "one_cycle", "plot", "sequential", "warmup", "warmup_stable_decay"],
)
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    import doctest
    import importlib

    monkeypatch.chdir(tmp_path)  # plot_schedule's example writes a file
    mod = importlib.import_module(f"keras_trainkit.schedules.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest failure(s) in {module}"


def test_a_scaled_integer_schedule_is_not_truncated():
    """Keras trains with an integer schedule (``PiecewiseConstantDecay([2], [1, 0])``); scaled
    by 0.5 it must give 0.5, 0.5, 0.5, 0 (the scale was cast to the integer dtype: 0)."""
    scaled = schedules.ScaledSchedule(keras.optimizers.schedules.PiecewiseConstantDecay([2], [1, 0]), 0.5)
    assert [float(scaled(k)) for k in range(4)] == [0.5, 0.5, 0.5, 0.0]
    assert float(schedules.ScaledSchedule(lambda: 2, 0.25)(0)) == 0.5
    floats = schedules.ScaledSchedule(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5), 0.5)
    assert keras.backend.standardize_dtype(floats(0).dtype) == "float32"
