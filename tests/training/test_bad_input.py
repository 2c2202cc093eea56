"""Bad data is reported with a clear error before the first training step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.training import Trainer


@pytest.fixture(scope="module")
def trainer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    return Trainer(model, keras.optimizers.SGD(0.1), "mse", jit_compile=False)


X = np.ones((10, 4), "float32")
Y = np.zeros((10, 2), "float32")


def assert_untouched(trainer, call):
    before = [w.copy() for w in trainer.model.get_weights()]
    iterations = int(trainer.model.optimizer.iterations)
    call()
    assert int(trainer.model.optimizer.iterations) == iterations
    for a, b in zip(before, trainer.model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "x, y, error, match",
    [
        (X, Y[:7], ValueError, r"`x` and `y` must have the same number of examples. "
                               r"Received: len\(x\)=10, len\(y\)=7"),
        (X[:0], Y[:0], ValueError, "at least one example. Received: x with 0 examples"),
        (np.ones((10, 5), "float32"), Y, ValueError,
         r"per-example shape \(4,\).*Received: x with per-example shape \(5,\)"),
        (np.ones((10, 4, 1), "float32"), Y, ValueError, r"must have rank 2.*Received: x with "),
        (np.array([["a"] * 4] * 10), Y, TypeError, "must hold numbers.*Received: x with dtype <U1"),
        (np.where(np.arange(40).reshape(10, 4) == 13, np.nan, X), Y, ValueError,
         r"must be finite \(no NaN or Inf\). Received: x with 1 non-finite value\(s\), the first "
         r"at index \(3, 1\)"),
        (X, np.full((10, 2), np.inf, "float32"), ValueError, "`y` must be finite.*20 non-finite"),
    ],
    ids=["length", "empty", "features", "rank", "dtype", "nan-x", "inf-y"],
)
def test_bad_arrays(trainer, x, y, error, match):
    def call():
        with pytest.raises(error, match=match):
            trainer.fit(x, y, batch_size=4, verbose=0)

    assert_untouched(trainer, call)


def test_bad_datasets(trainer):
    empty = tf.data.Dataset.from_tensor_slices((X, Y)).filter(lambda a, b: False).batch(2)
    with pytest.raises(ValueError, match="at least one batch"):
        trainer.fit(empty, verbose=0)
    wrong = tf.data.Dataset.from_tensor_slices((np.ones((10, 3), "float32"), Y)).batch(2)
    with pytest.raises(ValueError, match=r"per-example shape \(4,\).*Received.*\(3,\)"):
        trainer.fit(wrong, verbose=0)
    strings = tf.data.Dataset.from_tensor_slices((np.array([["a"] * 4] * 10), Y)).batch(2)
    with pytest.raises(TypeError, match="numeric tensors. Received: x with dtype string"):
        trainer.fit(strings, verbose=0)
    nan = tf.data.Dataset.from_tensor_slices((X * np.nan, Y)).batch(2)
    with pytest.raises(ValueError, match="first batch whose x holds non-finite"):
        trainer.fit(nan, verbose=0)
    good = tf.data.Dataset.from_tensor_slices((X, Y)).batch(2)
    with pytest.raises(ValueError, match="Argument `y` must be None"):
        trainer.fit(good, Y, verbose=0)
    with pytest.raises(ValueError, match="Received: batch_size=4"):
        trainer.fit(good, batch_size=4, verbose=0)


def test_bad_validation_and_arguments(trainer):
    with pytest.raises(ValueError, match=r"`validation_data` and `validation_data\[1\]`.*"
                                         r"len\(validation_data\)=10"):
        trainer.fit(X, Y, validation_data=(X, Y[:3]), verbose=0)
    with pytest.raises(ValueError, match="Received: validation_split=1.5"):
        trainer.fit(X, Y, validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        trainer.fit(X, Y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="Received: verbose=3"):
        trainer.fit(X, Y, verbose=3)
    with pytest.raises(TypeError, match="Received: callbacks="):
        trainer.fit(X, Y, callbacks=["early_stopping"], verbose=0)
