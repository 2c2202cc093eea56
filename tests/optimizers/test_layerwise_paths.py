"""LayerwiseLearningRate's patterns against Keras's variable paths.

Keras names a functional sub-model's variables after the layers inside it (``b1/kernel``,
not ``backbone/b1/kernel``), and a Sequential sub-model built by a call loses its name from
the paths after ``load_model``. A pattern naming the sub-model then matched nothing and its
layers trained at ``default`` with no error: ``depth_decay_multipliers(model)`` on a model
around a functional backbone (a ``keras.applications`` model) decayed nothing, and a saved
model with ``{"backbone/*": 0.0}`` trained its "frozen" backbone after loading.
"""

import os

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers import LayerwiseLearningRate, depth_decay_multipliers

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 6)).astype("float32")
Y = RNG.normal(size=(16, 3)).astype("float32")


def around(backbone):
    inputs = keras.Input((6,))
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(backbone(inputs)), name="net")


def functional_backbone():
    inputs = keras.Input((6,))
    return keras.Model(inputs, keras.layers.Dense(8, name="b1")(inputs), name="backbone")


def test_depth_decay_reaches_a_functional_sub_models_variables():
    keras.utils.set_random_seed(0)
    model = around(functional_backbone())
    assert [v.path for v in model.trainable_variables][:2] == ["b1/kernel", "b1/bias"]  # Keras's naming
    multipliers = depth_decay_multipliers(model, 0.5)
    assert multipliers == {"b1/kernel": 0.5, "b1/bias": 0.5, "head/*": 1.0}
    start = [w.copy() for w in model.get_weights()]
    model.compile(LayerwiseLearningRate(keras.optimizers.SGD(0.1), multipliers), "mse")
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    keras.utils.set_random_seed(0)
    plain = around(functional_backbone())
    plain.set_weights(start)
    plain.compile(keras.optimizers.SGD(0.1), "mse")
    plain.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    for decayed, full, before in zip(model.get_weights()[:2], plain.get_weights()[:2], start[:2]):
        np.testing.assert_allclose(decayed - before, 0.5 * (full - before), rtol=1e-5, atol=1e-7)


def test_a_pattern_matching_no_variable_is_refused_before_training():
    keras.utils.set_random_seed(0)
    model = around(functional_backbone())
    start = model.get_weights()
    model.compile(LayerwiseLearningRate(keras.optimizers.SGD(0.1), {"backbone/*": 0.0}), "mse")
    with pytest.raises(ValueError, match=r"'backbone/\*' of `multipliers` match none of the 4 variables"):
        model.fit(X, Y, verbose=0)
    for now, before in zip(model.get_weights(), start):
        np.testing.assert_array_equal(now, before)


def test_a_loaded_model_keeps_the_factors_its_shortened_paths_had(tmp_path):
    keras.utils.set_random_seed(0)
    model = around(keras.Sequential([keras.layers.Dense(8, name="b1")], name="backbone"))
    model.compile(LayerwiseLearningRate(keras.optimizers.SGD(0.1), {"backbone/*": 0.0}), "mse")
    model.fit(X, Y, verbose=0)  # built by the call: "backbone/b1/kernel"
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.trainable_variables[0].path == "b1/kernel"  # Keras's load drops the name
    start = loaded.get_weights()
    loaded.fit(X, Y, verbose=0)
    for now, before in zip(loaded.get_weights()[:2], start[:2]):
        np.testing.assert_array_equal(now, before)  # the backbone stays frozen
    assert not np.allclose(loaded.get_weights()[2], start[2])  # the head trains
    resaved = os.path.join(tmp_path, "again.keras")
    loaded.save(resaved)  # the shortened paths, recorded with their pattern, load again
    again = keras.saving.load_model(resaved)
    assert again.optimizer.factor_for(again.trainable_variables[0]) == 0.0
