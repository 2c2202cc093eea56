"""``keras_trainkit.optimizers.get`` resolves our optimizers and every Keras built-in.

Keras's newer optimizers are absent from older Kerases in the tested range (Keras 3.8
has ``Lamb`` and ``Lion`` but no ``Muon`` or ``ScheduleFreeAdamW``): a name whose class
the installed Keras lacks must give the registry's unknown-name error.
"""

import types

import keras
import pytest

import keras_trainkit.optimizers as optimizers
from keras_trainkit.optimizers import _registry

KERAS_BUILTINS = {
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adam": "Adam",
    "adamw": "AdamW",
    "nadam": "Nadam",
    "adamax": "Adamax",
    "adadelta": "Adadelta",
    "adafactor": "Adafactor",
    "ftrl": "Ftrl",
    "lion": "Lion",
    "lamb": "Lamb",
    "schedulefreeadamw": "ScheduleFreeAdamW",
    "schedule_free_adamw": "ScheduleFreeAdamW",
    "LAMB": "Lamb",
    "Lamb": "Lamb",
}

OURS = {
    "radam": "RAdam",
    "rectified_adam": "RAdam",
    "RAdam": "RAdam",
    "adabelief": "AdaBelief",
    "yogi": "Yogi",
    "novograd": "NovoGrad",
    "adan": "Adan",
    "lars": "LARS",
    "prodigy": "Prodigy",
    "adopt": "ADOPT",
    "ademamix": "AdEMAMix",
    "mars": "MARS",
    "muon": "Muon",
    "Muon": "Muon",
    "soap": "SOAP",
}


@pytest.mark.parametrize("name,class_name", sorted(KERAS_BUILTINS.items()))
def test_keras_builtins_resolve(name, class_name):
    if not hasattr(keras.optimizers, class_name):  # an older Keras in the tested range
        with pytest.raises(ValueError, match=f"Unknown optimizer identifier.*Received: identifier='{name}'"):
            optimizers.get(name)
        return
    optimizer = optimizers.get(name)
    assert type(optimizer) is getattr(keras.optimizers, class_name)


def test_every_optimizer_keras_exports_resolves_by_each_spelling():
    """Whatever the installed Keras exports (a test that follows new Keras releases)."""
    exported = [name for name, obj in vars(keras.optimizers).items()
                if isinstance(obj, type) and issubclass(obj, keras.optimizers.Optimizer)
                and name not in ("Optimizer", "LossScaleOptimizer", "MultiOptimizer")]
    assert {"Adam", "SGD", "Lamb", "Lion"} <= set(exported)
    for name in exported:
        cls = getattr(keras.optimizers, name)
        if optimizers.REGISTRY.lookup(name) is not None:  # ours shadows it by name (Muon)
            continue
        for spelling in (name, name.lower(), _registry.snake_case(name), name.upper()):
            assert type(optimizers.get(spelling)) is cls, spelling


def test_a_keras_without_the_newer_optimizers_gives_the_unknown_name_error(monkeypatch):
    """Keras 3.8, simulated: its namespace lacks ScheduleFreeAdamW and Muon, and its get knows neither."""
    old_namespace = types.SimpleNamespace(**{
        name: obj for name, obj in vars(keras.optimizers).items() if name not in ("ScheduleFreeAdamW", "Muon")})
    old_builtins = _registry.keras_builtins(old_namespace)
    monkeypatch.setattr(_registry, "_BUILTIN_LOOKUP", _registry.builtin_lookup(old_builtins))
    monkeypatch.setattr(optimizers.REGISTRY, "builtin_names", tuple(sorted(old_builtins)))
    monkeypatch.setattr(optimizers.REGISTRY, "fallback_names", tuple(sorted(n.lower() for n in old_builtins)))

    def old_keras_get(identifier):
        raise ValueError(f"Could not interpret optimizer identifier: {identifier}")

    monkeypatch.setattr(keras.optimizers, "get", old_keras_get)
    for name in ("schedule_free_adamw", "ScheduleFreeAdamW"):
        with pytest.raises(ValueError, match=r"Unknown optimizer identifier.( Did you mean [^?]*\?)? Known "
                                             r"keras_trainkit optimizers: ADOPT, .*plus Keras's own \(.*\). "
                                             rf"Received: identifier='{name}'") as error:
            optimizers.get(name)
        assert "ScheduleFreeAdamW" not in str(error.value).split("Received:")[0]
        assert "schedulefreeadamw" not in str(error.value)
    assert type(optimizers.get("lamb")) is keras.optimizers.Lamb
    assert type(optimizers.get("muon")) is optimizers.Muon


def test_lamb_resolves_although_keras_get_does_not():
    try:
        keras_result = keras.optimizers.get("lamb")
    except ValueError:  # Keras 3.15: Lamb is missing from its name table
        keras_result = None
    assert keras_result is None or isinstance(keras_result, keras.optimizers.Lamb)
    optimizer = optimizers.get("lamb", learning_rate=0.05)
    assert isinstance(optimizer, keras.optimizers.Lamb)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)


def test_keras_configs_resolve():
    newest = [keras.optimizers.Muon(0.04)] if hasattr(keras.optimizers, "Muon") else []
    for optimizer in [keras.optimizers.Lamb(0.02), keras.optimizers.Adam(0.03), *newest]:
        config = keras.optimizers.serialize(optimizer)
        rebuilt = optimizers.get(config)
        assert type(rebuilt) is type(optimizer)
        assert float(rebuilt.learning_rate) == pytest.approx(float(optimizer.learning_rate))


@pytest.mark.parametrize("name,class_name", sorted(OURS.items()))
def test_our_names_resolve(name, class_name):
    assert type(optimizers.get(name)) is getattr(optimizers, class_name)


def test_kwargs_and_config_and_instance():
    optimizer = optimizers.get("radam", learning_rate=0.01, total_steps=100)
    assert optimizer.total_steps == 100
    assert optimizers.get(optimizer) is optimizer
    config = {"class_name": "AdaBelief", "config": {"learning_rate": 0.02, "epsilon": 1e-12}}
    rebuilt = optimizers.get(config)
    assert isinstance(rebuilt, optimizers.AdaBelief) and rebuilt.epsilon == 1e-12


def test_unknown_name_is_a_value_error_listing_ours_and_keras_names():
    with pytest.raises(ValueError, match="Received: identifier='no_such_optimizer'") as error:
        optimizers.get("no_such_optimizer")
    assert "RAdam" in str(error.value) and "plus Keras's own (Adadelta, " in str(error.value)
    assert "Lamb" in str(error.value)


def test_muon_is_ours_without_shadowing_keras():
    assert type(optimizers.get("muon")) is optimizers.Muon
    if hasattr(keras.optimizers, "Muon"):
        assert type(keras.optimizers.get("muon")) is keras.optimizers.Muon
    ours = keras.optimizers.serialize(optimizers.Muon(0.01))
    assert type(keras.optimizers.deserialize(ours)) is optimizers.Muon
    assert type(optimizers.get(ours)) is optimizers.Muon


def test_cautious_resolves_with_its_inner_optimizer():
    optimizer = optimizers.get("cautious", optimizer="adam")
    assert isinstance(optimizer, optimizers.Cautious)
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.Adam)
