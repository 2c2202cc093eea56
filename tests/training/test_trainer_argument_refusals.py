"""Bad arguments to the Trainer refused before any work."""

import numpy as np
import pytest

import keras

from keras_trainkit.training import Trainer


def _trainer(**kwargs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    return Trainer(model, keras.optimizers.SGD(0.1), "mse", jit_compile=False, **kwargs)


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")


class _CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


@pytest.mark.parametrize("batch_size, error", [(0, ValueError), (-2, ValueError), (2.5, TypeError)])
def test_predict_refuses_a_bad_batch_size(batch_size, error):
    x, _ = _data()
    with pytest.raises(error, match=f"Received: batch_size={batch_size}"):
        _trainer().predict(x, batch_size=batch_size)


def test_negative_seed_is_refused_by_the_constructor():
    # Accepted before, then `fit(checkpoint_dir=...)` failed in NumPy with
    # "expected non-negative integer", after the model was built.
    with pytest.raises(ValueError, match="Received: seed=-1"):
        _trainer(seed=-1)


def test_no_optimizer_is_refused_by_the_constructor():
    # Keras compiles with `optimizer=None`; before, `fit` then failed inside the Trainer with
    # "AttributeError: 'NoneType' object has no attribute 'built'".
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="Argument `optimizer` must be a Keras optimizer.*Received: optimizer=None"):
        Trainer(model, None, "mse")
    assert not model.compiled


def test_negative_initial_epoch_is_refused():
    x, y = _data()
    trainer = _trainer()
    counter = _CountBatches()
    with pytest.raises(ValueError, match="Received: initial_epoch=-1"):
        trainer.fit(x, y, epochs=1, initial_epoch=-1, verbose=0, callbacks=[counter])
    assert counter.batches == 0


def test_validation_data_without_targets_is_refused_before_training():
    # Before: a whole epoch trained, then "None values not supported" from inside TensorFlow.
    x, y = _data()
    counter = _CountBatches()
    with pytest.raises(ValueError, match="validation_data"):
        _trainer().fit(x, y, batch_size=4, verbose=0, validation_data=(x,), callbacks=[counter])
    assert counter.batches == 0


def test_fit_and_evaluate_without_targets_name_y():
    x, _ = _data()
    trainer = _trainer()
    with pytest.raises(ValueError, match="Received: y=None"):
        trainer.fit(x, verbose=0)
    with pytest.raises(ValueError, match="Received: y=None"):
        trainer.evaluate(x, verbose=0)


def test_a_model_trained_by_add_loss_alone_still_fits_without_targets():
    class Activity(keras.layers.Layer):
        def call(self, inputs):
            self.add_loss(keras.ops.mean(keras.ops.square(inputs)))
            return inputs

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), Activity()])
    trainer = Trainer(model, keras.optimizers.SGD(0.1), None, jit_compile=False)
    x, _ = _data()
    history = trainer.fit(x, batch_size=4, epochs=2, verbose=0, validation_data=(x,))
    assert history.history["loss"][1] < history.history["loss"][0]


class _Batches(keras.utils.PyDataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        x, y = _data()
        return x[index * 4:(index + 1) * 4], y[index * 4:(index + 1) * 4]


def _generator():
    x, y = _data()
    yield x, y


@pytest.mark.parametrize("kind, make", [("keras.utils.PyDataset", _Batches),
                                        ("generator or iterator", _generator)])
def test_data_the_trainer_does_not_read_is_refused_by_name(kind, make):
    # Before: "`y` must hold the targets" for fit, NumPy's "inhomogeneous shape" for
    # predict, and a PyDataset as validation_data had its batches unpacked as (x, y).
    x, y = _data()
    trainer, counter = _trainer(), _CountBatches()
    calls = {"x": [lambda: trainer.fit(make(), verbose=0, callbacks=[counter]),
                   lambda: trainer.evaluate(make(), verbose=0),
                   lambda: trainer.predict(make())],
             "validation_data": [lambda: trainer.fit(x, y, validation_data=make(), verbose=0,
                                                     callbacks=[counter])]}
    for name, refused in calls.items():
        for call in refused:
            with pytest.raises(TypeError, match=rf"Argument `{name}` must be arrays .* or a tf.data.Dataset: "
                                                rf"the Trainer does not read a {kind}.*Received: {name} of type"):
                call()
    assert counter.batches == 0
