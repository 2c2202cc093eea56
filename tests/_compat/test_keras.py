"""keras_trainkit._compat.keras: the same result on every Keras in the tested range."""

import keras
import numpy as np
import pytest

from keras_trainkit._compat.keras import (
    _add_slot_variables_by_reference,
    add_slot_variables,
    metric_direction,
    metrics_in_order,
)


def _model_variables():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a"), keras.layers.Dense(1, name="b")],
                             name="net")
    return model.trainable_variables


def _describe(slots):
    return [None if v is None else (v.name, tuple(v.shape), v.dtype, keras.ops.convert_to_numpy(v).tolist())
            for v in slots]


def test_slots_interleave_per_model_variable_with_their_initializers():
    """For each model variable one slot per name, in the names' order (what checkpoints depend on)."""
    optimizer = keras.optimizers.SGD()
    variables = _model_variables()
    momentum, velocity = add_slot_variables(
        optimizer, variables, ["momentum", "velocity"], [keras.initializers.Constant(0.5), "zeros"])
    assert [v.name for v in optimizer.variables[-8:]] == [
        f"net_{name}_{slot}" for name in ("a_kernel", "a_bias", "b_kernel", "b_bias") for slot in ("momentum", "velocity")
    ]
    for model_variable, m, v in zip(variables, momentum, velocity):
        assert tuple(m.shape) == tuple(model_variable.shape) and m.dtype == model_variable.dtype
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(m), np.full(model_variable.shape, 0.5))
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), np.zeros(model_variable.shape))


def test_a_variable_overwritten_by_its_gradient_gets_no_slot():
    variables = _model_variables()
    variables[1].overwrite_with_gradient = True
    slots = add_slot_variables(keras.optimizers.SGD(), variables, "momentum")
    assert [s is None for s in slots] == [False, True, False, False]


def test_one_initializer_per_name_is_checked():
    with pytest.raises(ValueError, match="Argument `initializer` must be one initializer or one per slot name"):
        _add_slot_variables_by_reference(keras.optimizers.SGD(), _model_variables(), ["m", "v"], ["zeros"])


@pytest.mark.skipif(not hasattr(keras.optimizers.Optimizer, "add_optimizer_variables"),
                    reason="Optimizer.add_optimizer_variables exists from Keras 3.10 on")
def test_the_fallback_builds_what_keras_builds():
    variables = _model_variables()
    variables[2].overwrite_with_gradient = True
    names, inits = ["momentum", "velocity"], [keras.initializers.Constant(0.25), "ones"]
    ours_optimizer, theirs_optimizer = keras.optimizers.SGD(), keras.optimizers.SGD()
    ours = _add_slot_variables_by_reference(ours_optimizer, variables, names, inits)
    theirs = theirs_optimizer.add_optimizer_variables(variables, names, inits)
    assert [_describe(s) for s in ours] == [_describe(s) for s in theirs]
    assert _describe(ours_optimizer.variables) == _describe(theirs_optimizer.variables)  # creation order
    assert _describe(_add_slot_variables_by_reference(keras.optimizers.SGD(), variables, "m")) == _describe(
        keras.optimizers.SGD().add_optimizer_variables(variables, "m"))

@pytest.mark.parametrize("metric, direction", [
    (keras.metrics.BinaryAccuracy(), "up"),
    (keras.metrics.AUC(), "up"),
    (keras.metrics.MeanSquaredError(), "down"),
    (keras.metrics.MeanMetricWrapper(lambda y, p: p), None),
])
def test_metric_direction(metric, direction):
    assert metric_direction(metric) == direction


def test_metrics_in_order_is_the_order_of_model_evaluate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = {"a": rng.normal(size=(16, 1)).astype("float32"), "b": rng.integers(0, 2, size=(16, 1))}
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(inputs),
                                 "b": keras.layers.Dense(1, activation="sigmoid", name="b")(inputs)})
    model.compile("sgd", {"a": "mse", "b": "binary_crossentropy"}, metrics={"a": ["mae"], "b": ["accuracy"]})
    as_list = model.evaluate(x, y, verbose=0)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    reordered = dict(reversed(list(logs.items())))  # the order of the dictionary must not matter
    assert metrics_in_order(model, reordered) == pytest.approx(as_list)
    assert len(as_list) == 5
