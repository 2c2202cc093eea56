"""The callback contract of the Trainer against Keras's own ``fit`` / ``predict``.

A recording callback logs every hook call (name, batch/epoch index, logs) and
``set_params``; the Trainer must produce the sequence ``model.fit`` produces on
the same model, data, seed and optimizer. Expected values always come from Keras.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.training import Trainer

HOOKS = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
         "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
         "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end"]


def _value(v):
    if isinstance(v, dict):
        return {k: _value(x) for k, x in sorted(v.items())}
    if isinstance(v, (np.ndarray, tf.Tensor)) and np.ndim(v) > 0:
        return ("array", tuple(np.shape(v)))
    try:
        return round(float(v), 5)
    except (TypeError, ValueError):
        return v


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def set_params(self, params):
        self.calls.append(("set_params", dict(params)))
        super().set_params(params)


def _recording(name):
    def hook(self, *args, **kwargs):
        self.calls.append((name, *[_value(a) for a in (*args, *kwargs.values())]))
    return hook


for _name in HOOKS:
    setattr(Recorder, _name, _recording(_name))


def _model(outputs=1):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                             keras.layers.Dense(outputs)])


def _data(n=20):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


def _run(runner, model_outputs=1, loss="mse", metrics=("mae",), **fit_kwargs):
    """Fit with ``runner`` ("fit" or "trainer"); returns (recorded calls, history, weights)."""
    model, recorder = _model(model_outputs), Recorder()
    optimizer = keras.optimizers.SGD(0.05)
    if runner == "fit":
        model.compile(optimizer, loss, metrics=list(metrics), jit_compile=False)
        history = model.fit(shuffle=False, callbacks=[recorder], verbose=0, **fit_kwargs)
    else:
        trainer = Trainer(model, optimizer, loss, metrics=list(metrics), jit_compile=False, shuffle=False)
        history = trainer.fit(callbacks=[recorder], verbose=0, **fit_kwargs)
    return recorder.calls, history.history, model.get_weights()


def _assert_same_run(fit_kwargs_fit, fit_kwargs_trainer=None, **model_kwargs):
    expected = _run("fit", **model_kwargs, **fit_kwargs_fit)
    got = _run("trainer", **model_kwargs, **(fit_kwargs_trainer or fit_kwargs_fit))
    assert got[0] == expected[0]
    assert got[1].keys() == expected[1].keys()
    for key in expected[1]:
        np.testing.assert_allclose(got[1][key], expected[1][key], rtol=1e-5, atol=1e-6)
    for a, b in zip(got[2], expected[2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return expected


def test_hook_sequence_with_validation_and_a_stop_mid_epoch_is_fits():
    """Regression guard: every hook, index and log of fit, including a stop set in a batch hook."""
    x, y = _data()

    class StopAtBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2 and self.epoch == 1:
                self.model.stop_training = True

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    calls = {}
    for runner in ("fit", "trainer"):
        model, recorder = _model(), Recorder()
        if runner == "fit":
            model.compile(keras.optimizers.SGD(0.05), "mse", metrics=["mae"], jit_compile=False)
            fitter = lambda **kw: model.fit(shuffle=False, **kw)  # noqa: E731
        else:
            fitter = Trainer(model, keras.optimizers.SGD(0.05), "mse", metrics=["mae"], jit_compile=False,
                             shuffle=False).fit
        fitter(x=x, y=y, batch_size=4, epochs=3, validation_data=(x[:6], y[:6]), verbose=0,
               callbacks=[recorder, StopAtBatch()])
        calls[runner] = recorder.calls
    assert calls["trainer"] == calls["fit"]


@pytest.mark.parametrize("kind", ["arrays", "dataset"])
def test_predict_gives_callbacks_the_steps_and_batches_of_model_predict(kind):
    """Old code: ``set_params`` had ``steps=None`` (progress bar "1/Unknown") and an extra
    ``on_predict_batch_begin(3)`` with no end, where ``model.predict`` says ``steps=3``."""
    x, _ = _data()
    data = dict(x=x, batch_size=8) if kind == "arrays" else dict(x=tf.data.Dataset.from_tensor_slices(x).batch(8))
    calls = {}
    for runner in ("fit", "trainer"):
        model, recorder = _model(), Recorder()
        if runner == "fit":
            model.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=False)
            out = model.predict(verbose=0, callbacks=[recorder], **data)
        else:
            out = Trainer(model, keras.optimizers.SGD(0.05), "mse", jit_compile=False).predict(
                verbose=0, callbacks=[recorder], **data)
        calls[runner] = (recorder.calls, out)
    assert calls["trainer"][0] == calls["fit"][0]
    np.testing.assert_allclose(calls["trainer"][1], calls["fit"][1], rtol=1e-6)


@pytest.mark.parametrize("validation_freq", [2, [1, 4]])
def test_validation_freq_validates_after_the_epochs_fit_validates_after(validation_freq):
    """Old code: ``fit()`` had no ``validation_freq`` (TypeError)."""
    x, y = _data()
    calls, history, _ = _assert_same_run(dict(x=x, y=y, batch_size=8, epochs=4, validation_data=(x[:6], y[:6]),
                                              validation_freq=validation_freq))
    assert sum(call[0] == "on_test_begin" for call in calls) == 2


@pytest.mark.parametrize("target", ["sparse", "one_hot"])
@pytest.mark.parametrize("kind", ["arrays", "dataset"])
def test_class_weight_trains_and_logs_as_fit(kind, target):
    """Old code: ``fit()`` had no ``class_weight`` (TypeError)."""
    x, _ = _data()
    labels = np.random.default_rng(1).integers(0, 3, size=len(x))
    y = labels if target == "sparse" else np.eye(3, dtype="float32")[labels]
    loss = (keras.losses.SparseCategoricalCrossentropy(from_logits=True) if target == "sparse"
            else keras.losses.CategoricalCrossentropy(from_logits=True))
    data = (dict(x=x, y=y, batch_size=8) if kind == "arrays"
            else dict(x=tf.data.Dataset.from_tensor_slices((x, y)).batch(8)))
    _assert_same_run(dict(data, epochs=2, class_weight={0: 0.5, 2: 3.0}, validation_data=(x[:6], y[:6])),
                     model_outputs=3, loss=loss, metrics=("accuracy",))


def test_class_weight_and_validation_freq_are_checked():
    x, y = _data()
    labels = np.zeros(len(x), "int64")
    trainer = Trainer(_model(2), "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=False)
    with pytest.raises(ValueError, match="sample_weight"):
        trainer.fit(x, labels, class_weight={0: 2.0}, sample_weight=np.ones(len(x)), verbose=0)
    with pytest.raises(TypeError, match="class_weight"):
        trainer.fit(x, labels, class_weight=[1.0, 2.0], verbose=0)
    with pytest.raises(ValueError, match="class_weight"):
        trainer.fit(x, labels, class_weight={"a": 2.0}, verbose=0)
    # Before, these reached the sample-weight check and its message named `sample_weight`,
    # which the caller had not given.
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"`class_weight` must map class ids to finite weights >= 0.*"
                                             rf"\(class 1: {bad!r}\)"):
            trainer.fit(x, labels, class_weight={0: 1.0, 1: bad}, verbose=0)
    for bad in (0, [0, 2]):
        with pytest.raises(ValueError, match="validation_freq"):
            trainer.fit(x, labels, validation_freq=bad, validation_split=0.2, verbose=0)
    with pytest.raises(TypeError, match="validation_freq"):
        trainer.fit(x, labels, validation_freq=1.5, validation_split=0.2, verbose=0)


def test_a_class_missing_from_class_weight_weighs_one_in_a_dataset_as_in_arrays():
    """Labels above the largest listed class (2 and 3 with {0: 2.0, 1: 0.5}) weigh 1 for a
    dataset as for arrays (a lookup table of the listed classes only went out of range)."""
    x = np.random.default_rng(0).normal(size=(12, 3)).astype("float32")
    y = np.array([0, 1, 2, 3] * 3)

    def losses(data, class_weight=None):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
        trainer = Trainer(model, keras.optimizers.SGD(0.1),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          jit_compile=False, shuffle=False)
        return trainer.fit(**data, epochs=2, verbose=0, class_weight=class_weight).history["loss"]

    weights = np.array([2.0, 0.5, 1.0, 1.0] * 3, "float32")
    expected = losses(dict(x=x, y=y, batch_size=4, sample_weight=weights))
    listed = {0: 2.0, 1: 0.5}
    np.testing.assert_allclose(losses(dict(x=x, y=y, batch_size=4), listed), expected, rtol=1e-6)
    np.testing.assert_allclose(losses(dict(x=tf.data.Dataset.from_tensor_slices((x, y)).batch(4)), listed),
                               expected, rtol=1e-6)
