"""gradient_check passes correct models in float64 and catches a planted wrong gradient."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_trainkit as tk
from keras_trainkit.diagnostics import gradient_check


class PlantedSquare(keras.layers.Layer):
    """``t -> t^2`` whose ``tf.custom_gradient`` returns ``slope * t`` (correct only for slope 2)."""

    def __init__(self, slope=2.0, **kwargs):
        super().__init__(**kwargs)
        self.slope = slope

    def call(self, x):
        slope = self.slope

        @tf.custom_gradient
        def square(t):
            def grad(upstream):
                return upstream * slope * t

            return t * t, grad

        return square(x)

    def get_config(self):
        return {**super().get_config(), "slope": self.slope}


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 3, 16)


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _planted(slope):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh", name="first"),
                             PlantedSquare(slope), keras.layers.Dense(3, name="last")])


def test_correct_model_passes_in_float64():
    x, y = _data()
    keras.utils.set_random_seed(0)
    model = tk.models.mlp((6,), 3, depth=2, width=16, activation="tanh")
    before = [w.copy() for w in model.get_weights()]
    result = gradient_check(model, x, y, LOSS, num_coordinates=20)
    assert result.dtype == "float64"
    assert result.passed and result.max_relative_error < 1e-6, str(result)
    assert len(result.coordinates) == 20
    assert len({c.weight for c in result.coordinates}) == len(model.trainable_variables)
    for a, b in zip(before, model.get_weights()):  # the model itself is untouched
        np.testing.assert_array_equal(a, b)
    assert all(w.dtype == np.float32 for w in model.get_weights())


def test_correct_custom_gradient_passes_and_planted_error_is_flagged():
    x, y = _data()
    good = gradient_check(_planted(2.0), x, y, LOSS, num_coordinates=10)
    assert good.passed and good.max_relative_error < 1e-6, str(good)
    bad = gradient_check(_planted(2.5), x, y, LOSS, num_coordinates=10)
    assert not bad.passed and bad.max_relative_error > 0.1
    assert "FAILED" in str(bad)
    # the wrong coordinates are those before the planted layer; after it all is right
    for c in bad.coordinates:
        layer = c.weight.split("/")[-2]
        assert (c.relative_error > 0.1) if layer == "first" else (c.relative_error < 1e-6), c


def test_wrong_loss_gradient_is_flagged():
    @tf.custom_gradient
    def bad_mse_core(diff):
        return tf.square(diff), lambda upstream: upstream * diff  # should be 2 * diff

    def bad_mse(y_true, y_pred):
        return tf.reduce_mean(bad_mse_core(y_pred - tf.cast(y_true, y_pred.dtype)), axis=-1)

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert gradient_check(model, x, y, "mse", num_coordinates=6).passed
    assert not gradient_check(model, x, y, bad_mse, num_coordinates=6).passed


def test_float32_fallback_and_bad_arguments():
    x, y = _data()
    model = tk.models.mlp((6,), 3, depth=1, width=8, activation="tanh")
    result = gradient_check(model, x, y, LOSS, num_coordinates=5, float64=False)
    assert result.dtype == "float32" and result.threshold == 5e-2
    with pytest.raises(ValueError, match="Received: num_coordinates=0"):
        gradient_check(model, x, y, LOSS, num_coordinates=0)
    with pytest.raises(ValueError, match="Received: epsilon=-1"):
        gradient_check(model, x, y, LOSS, epsilon=-1)
    with pytest.raises(ValueError, match="Argument `abs_tolerance` must be >= 0.*Received: "
                                         "abs_tolerance=-1"):
        gradient_check(model, x, y, LOSS, abs_tolerance=-1)
    with pytest.raises(ValueError, match="Received: abs_tolerance=nan"):
        gradient_check(model, x, y, LOSS, abs_tolerance=float("nan"))


def _two_output_model():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="tanh", name="hidden")(inputs)
    return keras.Model(inputs, {"b": keras.layers.Dense(1, name="b")(hidden),
                                "a": keras.layers.Dense(2, name="a")(hidden)})


def test_several_outputs_sum_the_loss_over_them():
    """A list (or dict) of targets for a two-output model raised NumPy's "inhomogeneous
    shape" error. The loss is now each output's mean loss, summed, as ``compile(loss="mse")``
    computes it, so the gradient of the second head is checked, not zero."""
    model = _two_output_model()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 3))
    y = {"a": rng.normal(size=(6, 2)), "b": rng.normal(size=(6, 1))}
    with tf.GradientTape() as tape:
        prediction = model(x.astype("float32"))
        total = sum(tf.reduce_mean(keras.losses.mean_squared_error(y[k], prediction[k])) for k in "ab")
    expected = {v.path: g.numpy() for v, g in zip(model.trainable_variables,
                                                    tape.gradient(total, model.trainable_variables))}
    for targets in (y, [y["a"], y["b"]]):  # outputs in the order of model.output_names
        result = gradient_check(model, x, targets, "mse", num_coordinates=40)
        assert result.passed, result
        checked = {c.weight for c in result.coordinates}
        assert {"a/kernel", "b/kernel", "hidden/kernel"} <= checked
        for check in result.coordinates:
            np.testing.assert_allclose(check.analytic, expected[check.weight][check.index],
                                       rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("targets, received", [
    (np.zeros((6, 2)), r"ndarray of shape \(6, 2\)"),
    ([np.zeros((6, 2))], "a list of 1"),
    ({"a": np.zeros((6, 2)), "c": np.zeros((6, 1))}, r"a dict with keys \['a', 'c'\]"),
])
def test_several_outputs_need_one_target_each(targets, received):
    with pytest.raises(ValueError, match=r"Argument `y` must hold one target array per output of "
                                         r"the model \(2: \['a', 'b'\]\).*Received: y=" + received):
        gradient_check(_two_output_model(), np.zeros((6, 3)), targets, "mse")
