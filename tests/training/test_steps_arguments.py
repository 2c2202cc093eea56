"""``fit(validation_steps=)``, ``evaluate(steps=)`` and ``predict(steps=, callbacks=)``: the
batches ``model.fit`` / ``evaluate`` / ``predict`` take, checked against Keras on the same
model and data; an infinite dataset without them is refused before any work (Keras's own
loops, and the Trainer's before, never ended)."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.training import Trainer

X = np.arange(40, dtype="float32").reshape(10, 4) / 40.0
Y = np.arange(10, dtype="float32").reshape(10, 1)  # every batch has its own loss


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])


def _batches(repeat=False):
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(2)  # 5 batches
    return dataset.repeat() if repeat else dataset


def _val_losses(runner, validation, validation_steps, epochs=4):
    """The validation losses of ``epochs`` epochs that do not change the weights (rate 0).
    Array validation data is batched as the training arrays: 2 examples, 5 batches."""
    model = _model()
    train = dict(x=_batches()) if isinstance(validation, tf.data.Dataset) else dict(
        x=X, y=Y, batch_size=2)
    kwargs = dict(epochs=epochs, validation_data=validation, validation_steps=validation_steps,
                  verbose=0, **train)
    if runner == "fit":
        model.compile(keras.optimizers.SGD(0.0), "mse")
        return model.fit(shuffle=False, **kwargs).history["val_loss"]
    trainer = Trainer(model, keras.optimizers.SGD(0.0), "mse", jit_compile=False, shuffle=False)
    return trainer.fit(**kwargs).history["val_loss"]


@pytest.mark.parametrize("validation", ["finite", "infinite", "arrays"])
@pytest.mark.parametrize("validation_steps", [2, 7])
def test_each_validation_takes_the_first_validation_steps_batches_as_fit(validation, validation_steps):
    """``model.fit`` resets its evaluation iterator at every validation: the first 2 of
    the 5 batches each time (7: all 5 of finite data, 7 of the repeated dataset)."""
    data = {"finite": _batches, "infinite": lambda: _batches(repeat=True),
            "arrays": lambda: (X, Y)}[validation]
    expected = _val_losses("fit", data(), validation_steps)
    losses = _val_losses("trainer", data(), validation_steps)
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    whole = _val_losses("fit", data() if validation != "infinite" else _batches(), None, epochs=1)
    # 2 batches are not the whole data: the steps were honoured (7 of finite data is all of it)
    assert (expected[0] == pytest.approx(whole[0])) == (validation_steps == 7 and validation != "infinite")


@pytest.mark.timeout(300)  # a regression would loop forever: fail it instead
def test_an_infinite_validation_dataset_needs_validation_steps():
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    trainer = Trainer(model, "sgd", "mse", jit_compile=False)
    with pytest.raises(ValueError, match="Argument `validation_data` is an infinite.*"
                                         "Received: validation_steps=None"):
        trainer.fit(_batches(), epochs=1, validation_data=_batches(repeat=True), verbose=0)
    for weight, old in zip(model.get_weights(), before):  # refused before training
        np.testing.assert_array_equal(weight, old)


@pytest.mark.parametrize("steps", [3, 7])
def test_evaluate_takes_steps_batches_as_keras_does(steps, caplog):
    """3 of the 5 batches; 7 is more than the data has: all 5, with a warning."""
    model = _model()
    model.compile("sgd", "mse")
    expected = model.evaluate(_batches(), steps=steps, verbose=0)
    with caplog.at_level(logging.WARNING):
        loss = Trainer(model, "sgd", "mse", jit_compile=False).evaluate(_batches(), steps=steps, verbose=0)
    assert loss == pytest.approx(expected, rel=1e-6)
    assert ("ran out after 5 of steps=7" in caplog.text) == (steps == 7)
    assert Trainer(model, "sgd", "mse").evaluate(_batches(repeat=True), steps=steps, verbose=0) == (
        pytest.approx(model.evaluate(_batches(repeat=True), steps=steps, verbose=0), rel=1e-6))


class _SeenPredictions(keras.callbacks.Callback):
    def on_predict_begin(self, logs=None):
        self.outputs, self.begun = [], []

    def on_predict_batch_begin(self, batch, logs=None):
        self.begun.append(batch)

    def on_predict_batch_end(self, batch, logs=None):
        self.outputs.append(np.asarray(logs["outputs"]))

    def on_predict_end(self, logs=None):
        self.ended = True


def test_predict_takes_steps_batches_and_runs_the_callbacks_as_keras_does():
    model = _model()
    expected = model.predict(_batches(repeat=True), steps=3, verbose=0)
    seen = _SeenPredictions()
    outputs = Trainer(model, "sgd", "mse").predict(_batches(repeat=True), steps=3, callbacks=[seen])
    np.testing.assert_allclose(outputs, expected, rtol=1e-6)
    assert outputs.shape == (6, 1) and seen.begun == [0, 1, 2] and seen.ended
    np.testing.assert_allclose(np.concatenate(seen.outputs), expected, rtol=1e-6)
    np.testing.assert_allclose(Trainer(model, "sgd", "mse").predict(X, batch_size=4, steps=2),
                               model.predict(X, batch_size=4, steps=2, verbose=0), rtol=1e-6)


@pytest.mark.timeout(300)  # a regression would loop forever: fail it instead
@pytest.mark.parametrize("call", ["evaluate", "predict"])
def test_an_infinite_dataset_needs_steps(call):
    trainer = Trainer(_model(), "sgd", "mse")
    with pytest.raises(ValueError, match="Argument `x` is an infinite.*Received: steps=None"):
        getattr(trainer, call)(_batches(repeat=True))


@pytest.mark.parametrize("call, kwargs, match", [
    ("evaluate", {"steps": 0}, "steps=0"),
    ("predict", {"steps": 1.5}, "steps=1.5"),
    ("predict", {"callbacks": "progbar"}, "callbacks='progbar'"),
    ("fit", {"validation_data": (X, Y), "validation_steps": -1}, "validation_steps=-1"),
    ("fit", {"validation_steps": 2}, "needs validation data.*validation_steps=2"),
])
def test_bad_steps_are_refused(call, kwargs, match):
    trainer = Trainer(_model(), "sgd", "mse")
    with pytest.raises((ValueError, TypeError), match=match):
        if call == "fit":
            trainer.fit(X, Y, epochs=1, verbose=0, **kwargs)
        else:
            getattr(trainer, call)(_batches(), **kwargs)
