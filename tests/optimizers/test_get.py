"""``keras_trainkit.optimizers.get`` resolves our optimizers and every Keras built-in."""

import keras
import pytest

import keras_trainkit.optimizers as optimizers

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
    optimizer = optimizers.get(name)
    assert type(optimizer) is getattr(keras.optimizers, class_name)


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
    for optimizer in (keras.optimizers.Lamb(0.02), keras.optimizers.Adam(0.03), keras.optimizers.Muon(0.04)):
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


def test_unknown_name_is_a_value_error():
    with pytest.raises(ValueError, match="Received: identifier='no_such_optimizer'"):
        optimizers.get("no_such_optimizer")


def test_muon_is_ours_without_shadowing_keras():
    assert type(optimizers.get("muon")) is optimizers.Muon
    assert type(keras.optimizers.get("muon")) is keras.optimizers.Muon
    ours = keras.optimizers.serialize(optimizers.Muon(0.01))
    assert type(keras.optimizers.deserialize(ours)) is optimizers.Muon
    assert type(optimizers.get(ours)) is optimizers.Muon


def test_cautious_resolves_with_its_inner_optimizer():
    optimizer = optimizers.get("cautious", optimizer="adam")
    assert isinstance(optimizer, optimizers.Cautious)
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.Adam)
