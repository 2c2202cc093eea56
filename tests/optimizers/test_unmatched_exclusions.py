"""An exclusion pattern that matches no variable is reported (a warning), on the four
options that take one: Muon's ``exclude_layers``, ``AdaptiveGradientClipping``'s and
``GradientCentralization``'s ``exclude``, ``Cautious``'s ``exclude_from_weight_decay``.

Keras names a functional sub-model's variables after the layers inside it, so a pattern
naming the sub-model (``"backbone"``) excluded nothing, with no word said.
"""

import logging

import keras
import numpy as np
import pytest

import keras_trainkit as tk

X = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
Y = np.random.default_rng(1).normal(size=(16, 3)).astype("float32")

OPTIMIZERS = {
    "Muon": lambda pattern: tk.optimizers.Muon(0.02, exclude_layers=[pattern]),
    "AdaptiveGradientClipping": lambda pattern: tk.optimizers.TransformedOptimizer(
        keras.optimizers.SGD(0.01), [tk.optimizers.AdaptiveGradientClipping(0.01, exclude=[pattern])]),
    "GradientCentralization": lambda pattern: tk.optimizers.TransformedOptimizer(
        keras.optimizers.SGD(0.01), [tk.optimizers.GradientCentralization(exclude=[pattern])]),
    "Cautious": lambda pattern: tk.optimizers.Cautious(
        keras.optimizers.Adam(0.01), weight_decay=0.1, exclude_from_weight_decay=[pattern]),
}


def fit_with(make_optimizer, pattern):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    backbone = keras.Model(inputs, keras.layers.Dense(8, name="b1")(inputs), name="backbone")
    outer = keras.Input((6,))
    model = keras.Model(outer, keras.layers.Dense(3, name="head")(backbone(outer)))
    model.compile(make_optimizer(pattern), "mse")
    model.fit(X, Y, verbose=0)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_pattern_naming_a_functional_sub_model_is_reported(name, caplog):
    with caplog.at_level(logging.WARNING, logger="keras_trainkit"):
        fit_with(OPTIMIZERS[name], "backbone")
    reports = [r.getMessage() for r in caplog.records if "match none of the" in r.getMessage()]
    assert len(reports) == 1
    assert reports[0].startswith(f"{name}: the pattern(s) 'backbone' of `")
    assert "'b1/kernel'" in reports[0]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_pattern_naming_the_layers_inside_is_not_reported(name, caplog):
    with caplog.at_level(logging.WARNING, logger="keras_trainkit"):
        fit_with(OPTIMIZERS[name], "b1")
    assert not [r for r in caplog.records if "match none of the" in r.getMessage()]


def test_listed_paths_shows_the_first_eight_and_says_when_there_are_more():
    from keras_trainkit.utils.variables import listed_paths

    assert listed_paths(["a/kernel", "a/bias"]) == "'a/kernel', 'a/bias'"
    many = [f"dense_{i}/kernel" for i in range(10)]
    assert listed_paths(many) == ", ".join(f"'dense_{i}/kernel'" for i in range(8)) + ", ..."
    assert listed_paths(many[:8]).endswith("'dense_7/kernel'")
