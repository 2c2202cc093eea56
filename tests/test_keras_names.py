"""Issues 17 and 19: after ``import keras_trainkit`` our names work wherever Keras takes a name.

Keras's own look-ups (``keras.optimizers.get``, ``model.compile(optimizer=...)``,
``keras.initializers.get``, ``keras.optimizers.schedules.deserialize``) find our
classes by their bare names, and no name Keras already has changes meaning.
"""

import keras
import numpy as np
import pytest

import keras_trainkit  # noqa: F401 - the import is what registers the names
from keras_trainkit import initializers, optimizers, regularizers, schedules
from keras_trainkit.utils import registry


@pytest.mark.parametrize("name", ["radam", "RAdam", "r_adam"])
def test_keras_optimizers_get_finds_ours(name):
    assert type(keras.optimizers.get(name)) is optimizers.RAdam


def test_compile_by_name_trains_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, kernel_initializer="geometric_fan")])
    model.compile(optimizer="adabelief", loss="mse")
    assert type(model.optimizer) is optimizers.AdaBelief
    assert type(model.layers[0].kernel_initializer) is initializers.GeometricFan
    x = np.ones((8, 3), "float32")
    model.fit(x, np.zeros((8, 1)), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is optimizers.AdaBelief
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_schedules_initializers_and_regularizers_by_bare_name():
    schedule = keras.optimizers.schedules.deserialize(
        {"class_name": "linear_decay", "config": {"initial_learning_rate": 0.1, "decay_steps": 10}})
    assert type(schedule) is schedules.LinearDecay
    assert type(keras.initializers.get("GeometricFan")) is initializers.GeometricFan
    # keras.regularizers.get looks plain strings up in Keras's own table only; configs work
    assert type(keras.regularizers.get({"class_name": "srip", "config": {}})) is regularizers.SRIP


def test_keras_names_keep_their_meaning():
    assert type(keras.optimizers.get("adam")) is keras.optimizers.Adam
    assert type(keras.optimizers.get("muon")) is keras.optimizers.Muon
    assert type(keras.initializers.get("he_normal")) is keras.initializers.HeNormal
    assert keras.activations.get("linear") is keras.activations.linear
    taken = registry.keras_public_names()
    ours = {cls for family in (optimizers, schedules, initializers, regularizers)
            for cls in family.REGISTRY.classes.values()}
    for key, obj in keras.saving.get_custom_objects().items():
        if obj in ours and ">" not in key:
            assert registry._normalize(key) not in taken, key


def test_a_class_named_like_a_keras_one_gets_no_bare_name():
    assert registry.bare_keras_names(type("Muon", (), {})) == []
    assert registry.bare_keras_names(type("Adam", (), {})) == []
    assert registry.bare_keras_names(type("FancyNewThing", (), {})) == ["FancyNewThing", "fancy_new_thing",
                                                               "fancynewthing"]


def test_every_argument_free_class_is_reachable_through_keras():
    getters = {optimizers: keras.optimizers.get, initializers: keras.initializers.get}
    for package, keras_get in getters.items():
        for name, cls in package.REGISTRY.classes.items():
            if name in ("OptimizerWrapper",) or not registry.bare_keras_names(cls):
                continue
            try:
                cls()
            except TypeError:  # needs an argument (a wrapper's inner optimizer): config only
                continue
            assert type(keras_get(name)) is cls, name


@pytest.mark.parametrize(
    "package, wrong, suggested",
    [
        (optimizers, "radm", "radam"),
        (optimizers, "lookahed", "lookahead"),
        (optimizers, "lamm", "lamb"),  # Keras's own names are suggested too
        (schedules, "cosine_anealing", "cosine_annealing"),
        (initializers, "geometrc_fan", "geometric_fan"),
        (regularizers, "spectral_nrom", "spectral_norm"),
    ],
)
def test_a_misspelling_suggests_the_closest_name(package, wrong, suggested):
    with pytest.raises(ValueError, match=rf"Did you mean '{suggested}'.*Received: identifier='{wrong}'"):
        package.get(wrong)


def test_known_names_leave_out_abstract_classes():
    with pytest.raises(ValueError) as info:
        optimizers.get("no_such_optimizer")
    assert "OptimizerWrapper" not in str(info.value) and "RAdam" in str(info.value)
    assert "optimizerwrapper" not in optimizers.REGISTRY.names()
    assert "OptimizerWrapper" not in keras.saving.get_custom_objects()
    # still serializable and reachable by its exact name
    assert type(optimizers.get("OptimizerWrapper", optimizer="sgd")) is optimizers.OptimizerWrapper


def test_bad_configs_are_value_errors():
    with pytest.raises(ValueError, match=r"string `class_name`.*Received: identifier=\{\}"):
        optimizers.get({})
    with pytest.raises(ValueError, match="a dict `config`"):
        schedules.get({"class_name": "LinearDecay", "config": [1]})
