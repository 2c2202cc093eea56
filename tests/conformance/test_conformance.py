"""The conformance suite: every public class in every registry passes these checks.

The cases are generated from ``keras_trainkit.utils.families()``; a class added
to a registry is checked here with no new test code (see ``spec.py``).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json

import keras
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_trainkit
from keras_trainkit.utils import families

# Import every sub-package so every registry is populated.
importlib.import_module("keras_trainkit.tuning")

FAMILIES = families()
CASES = [
    pytest.param(family, name, id=f"{family}.{name}")
    for family, registry in sorted(FAMILIES.items())
    for name in sorted(registry.classes)
]


def _family_spec(family: str):
    module = importlib.import_module(f"tests.conformance.specs.{family}")
    return module.FAMILY


def _package(family: str):
    return importlib.import_module(FAMILIES[family].module)


def _build(family: str, name: str):
    cls = FAMILIES[family].classes[name]
    spec = _family_spec(family).spec_for(name)
    return cls, spec, cls(**spec.valid_kwargs())


def _canonical(config) -> str:
    return json.dumps(keras.saving.serialize_keras_object(config), sort_keys=True, default=repr)


def test_every_family_has_a_spec_module():
    for family in FAMILIES:
        _family_spec(family)


def test_top_level_exposes_sub_packages():
    for name in keras_trainkit.__all__:
        assert hasattr(keras_trainkit, name), name


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_public_names_are_exported_and_documented(family):
    package = _package(family)
    for name in FAMILIES[family].classes:
        assert name in package.__all__, f"{name} missing from {package.__name__}.__all__"
        assert getattr(package, name) is FAMILIES[family].classes[name]
    for name in package.__all__:
        obj = getattr(package, name)
        assert inspect.getdoc(obj), f"{package.__name__}.{name} has no docstring"


@pytest.mark.parametrize("family,name", CASES)
def test_docstring_and_registration(family, name):
    cls = FAMILIES[family].classes[name]
    doc = inspect.getdoc(cls)
    assert doc and len(doc.strip()) > 20, f"{name} needs a docstring"
    registered = keras.saving.get_registered_object(f"keras_trainkit>{name}")
    assert registered is cls, f"{name} is not registered as keras_trainkit>{name}"


@pytest.mark.parametrize("family,name", CASES)
def test_get_finds_class(family, name):
    package = _package(family)
    cls, _, instance = _build(family, name)
    assert FAMILIES[family].lookup(name) is cls
    assert package.get(instance) is instance
    from_config = package.get({"class_name": name, "config": instance.get_config()})
    assert type(from_config) is cls


@pytest.mark.parametrize("family,name", CASES)
def test_config_round_trip(family, name):
    cls, _, instance = _build(family, name)
    config = instance.get_config()
    json.dumps(keras.saving.serialize_keras_object(instance))  # JSON-serializable
    rebuilt = cls.from_config(copy.deepcopy(config))
    assert _canonical(rebuilt.get_config()) == _canonical(config)


@pytest.mark.parametrize("family,name", CASES)
def test_invalid_argument_raises_value_error(family, name):
    cls = FAMILIES[family].classes[name]
    family_spec = _family_spec(family)
    spec = family_spec.spec_for(name)
    invalid = spec.invalid if spec.invalid is not None else family_spec.invalid
    kwargs = {**spec.valid_kwargs(), **invalid}
    with pytest.raises(ValueError, match="Received:"):
        cls(**kwargs)


_SCALARS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.booleans(),
    st.text(max_size=8),
    st.none(),
)


def _fuzzable_parameters(cls) -> list[str]:
    names = []
    for parameter in inspect.signature(cls.__init__).parameters.values():
        if parameter.name == "self" or parameter.kind in (
            parameter.VAR_KEYWORD,
            parameter.VAR_POSITIONAL,
        ):
            continue
        if parameter.default is inspect.Parameter.empty:
            continue
        if isinstance(parameter.default, (bool, int, float, str)) or parameter.default is None:
            names.append(parameter.name)
    return names


@pytest.mark.parametrize("family,name", CASES)
def test_constructor_fuzz_raises_only_value_or_type_error(family, name):
    cls = FAMILIES[family].classes[name]
    spec = _family_spec(family).spec_for(name)
    parameters = _fuzzable_parameters(cls)
    if not spec.fuzz or not parameters:
        pytest.skip(f"{name}: no scalar constructor arguments to fuzz")

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.sampled_from(parameters), _SCALARS, max_size=3))
    def fuzz(overrides):
        kwargs = {**spec.valid_kwargs(), **overrides}
        try:
            cls(**kwargs)
        except (ValueError, TypeError):
            pass

    fuzz()


@pytest.mark.parametrize("family,name", CASES)
def test_use_in_fit_and_save_load(family, name, tmp_path, request):
    _, spec, instance = _build(family, name)
    cause = spec.known_failures.get(keras.backend.backend())
    if cause is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=cause))
    exercise = spec.exercise or _family_spec(family).exercise
    keras.utils.set_random_seed(0)
    exercise(instance, tmp_path)
