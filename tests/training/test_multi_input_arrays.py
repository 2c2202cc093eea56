"""Multi-input / multi-output array inputs given as lists, or as a dict for a list-input model:
the Trainer must do what ``model.fit`` / ``evaluate`` / ``predict`` do with them (Keras is the
reference, on the same model, data and seed)."""

import keras
import numpy as np
import pytest

from keras_trainkit.training import Trainer

N = 13


def two_in_two_out(seed=0):
    """A functional model with a list of inputs ``[z (3,), a (2,)]`` and outputs ``[(1,), (3,)]``."""
    keras.utils.set_random_seed(seed)
    z, a = keras.Input((3,), name="z"), keras.Input((2,), name="a")
    hidden = keras.layers.Concatenate()([z, a])
    return keras.Model([z, a], [keras.layers.Dense(1, name="o1")(hidden), keras.layers.Dense(3, name="o2")(hidden)])


def data():
    rng = np.random.default_rng(0)
    xz, xa = rng.normal(size=(N, 3)).astype("float32"), rng.normal(size=(N, 2)).astype("float32")
    y1, y2 = rng.normal(size=(N, 1)).astype("float32"), rng.integers(0, 3, size=(N, 1))
    weights = [rng.uniform(0.2, 2.0, size=(N,)).astype("float32"), rng.uniform(0.2, 2.0, size=(N, 1)).astype("float32")]
    return [xz, xa], [y1, y2], weights


LOSSES = ["mse", keras.losses.SparseCategoricalCrossentropy(from_logits=True)]


def weights_of(model):
    return [w.numpy() for w in model.weights]


def test_list_inputs_outputs_and_weights_train_evaluate_and_predict_as_keras():
    # Before the fix the array pipeline handed tf.data a list inside its element and
    # every call failed: "TypeError: Unsupported return value from function passed to
    # Dataset.map()".
    x, y, sample_weight = data()
    validation = (x, y, sample_weight)
    results = {}
    for runner in ("fit", "trainer"):
        model = two_in_two_out()
        if runner == "fit":
            model.compile(keras.optimizers.SGD(0.1), LOSSES, jit_compile=False)
            history = model.fit(x, y, sample_weight=sample_weight, batch_size=4, epochs=2, shuffle=False,
                                verbose=0, validation_data=validation)
            evaluated = model.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)
            predicted = model.predict(x, batch_size=5, verbose=0)
        else:
            trainer = Trainer(model, keras.optimizers.SGD(0.1), LOSSES, jit_compile=False, shuffle=False)
            history = trainer.fit(x, y, sample_weight=sample_weight, batch_size=4, epochs=2, verbose=0,
                                  validation_data=validation)
            evaluated = trainer.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)
            predicted = trainer.predict(x, batch_size=5)
        results[runner] = weights_of(model), history.history, evaluated, predicted
    (w_fit, h_fit, e_fit, p_fit), (w_ours, h_ours, e_ours, p_ours) = results["fit"], results["trainer"]
    for ours, theirs in zip(w_ours, w_fit):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert sorted(h_ours) == sorted(h_fit)
    for key in h_fit:
        np.testing.assert_allclose(h_ours[key], h_fit[key], rtol=1e-5)
    assert sorted(e_ours) == sorted(e_fit)
    for key in e_fit:
        np.testing.assert_allclose(e_ours[key], e_fit[key], rtol=1e-5)
    for ours, theirs in zip(p_ours, p_fit):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_dict_x_for_a_list_input_model_is_fed_by_name_as_keras_does():
    # Keras feeds a dict `x` to a list-input model by input name. The shape check paired the
    # dict's sorted keys (a, z) with the model's inputs in order (z, a) and refused:
    # "Argument `x` must have per-example shape (3,) ... Received: x with per-example shape (2,)".
    (xz, xa), y, _ = data()
    x = {"z": xz, "a": xa}
    trained = {}
    for runner in ("fit", "trainer"):
        model = two_in_two_out()
        if runner == "fit":
            model.compile(keras.optimizers.SGD(0.1), LOSSES, jit_compile=False)
            model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        else:
            Trainer(model, keras.optimizers.SGD(0.1), LOSSES, jit_compile=False, shuffle=False).fit(
                x, y, batch_size=4, epochs=1, verbose=0)
        trained[runner] = weights_of(model)
    for ours, theirs in zip(trained["trainer"], trained["fit"]):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_dict_x_with_a_wrong_shape_is_still_refused_naming_it():
    (xz, xa), y, _ = data()
    trainer = Trainer(two_in_two_out(), "sgd", LOSSES, jit_compile=False)
    with pytest.raises(ValueError, match=r"per-example shape \(2,\).*Received: x with per-example shape \(3,\)"):
        trainer.fit({"z": xz, "a": xz}, y, batch_size=4, epochs=1, verbose=0)
