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


# Issue 18, section 4: labels the loss cannot take, complex inputs, negative
# weights and Python lists, all refused before the first step.
@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return Trainer(model, keras.optimizers.SGD(0.1), loss, jit_compile=False)


LABELS = np.array([0, 1, 2, 1, 0, 2, 1, 0, 2, 1])


@pytest.mark.parametrize(
    "x, y, sample_weight, error, match",
    [
        (X, np.where(LABELS == 2, 5, LABELS), None, ValueError,
         r"`y` must hold class ids in \[0, 2\] for the loss sparse_categorical_crossentropy "
         r"\(the model has 3 outputs\). Received: y with 3 value\(s\) outside, e.g. 5"),
        (X, np.where(LABELS == 2, -1, LABELS), None, ValueError, r"class ids in \[0, 2\].*e.g. -1"),
        (X, LABELS + 0.5, None, ValueError,
         r"`y` must hold whole-number class ids.*Received: y with 10 fractional value\(s\), e.g. 0.5"),
        (X.astype("complex64"), LABELS, None, TypeError,
         "`x` must hold real numbers.*Received: x with dtype complex64"),
        (X, LABELS, np.where(LABELS == 1, -0.5, 1.0), ValueError,
         r"`sample_weight` must be >= 0.*Received: sample_weight with 4 negative value\(s\), the "
         r"first -0.5 at index \(1,\)"),
        ([1.0, 2.0, 3.0], [0, 1, 2], None, TypeError,
         r"`x` must be an array.*a Python list is read as one array per input.*Received: x, a "
         r"list of 3 Python numbers. Convert it with `np.asarray\(x\)`"),
        # NumPy scalars have a shape (()), so they passed the check and y was read as a
        # rank-0 array: "`y` must have a batch axis (rank >= 1)".
        (X, list(LABELS), None, TypeError,
         r"`y` must be an array.*Received: y, a list of 10 scalars \(0-d arrays\). "
         r"Convert it with `np.asarray\(y\)`"),
    ],
    ids=["label-too-large", "label-negative", "label-fractional", "complex-x", "negative-weight",
         "python-list", "list-of-numpy-scalars"],
)
def test_bad_labels_and_weights_before_training(classifier, x, y, sample_weight, error, match):
    def call():
        with pytest.raises(error, match=match) as info:
            classifier.fit(x, y, sample_weight=sample_weight, batch_size=4, verbose=0)
        assert "\n" not in str(info.value)  # one line, not TensorFlow's 53

    assert_untouched(classifier, call)


def test_bad_labels_in_a_dataset_and_in_validation_data(classifier):
    far = tf.data.Dataset.from_tensor_slices((X, np.where(LABELS == 2, 7, LABELS))).batch(4)
    with pytest.raises(ValueError, match=r"`x` must yield class ids in \[0, 2\].*Received: a first "
                                         r"batch whose y has 1 value\(s\) outside, e.g. 7"):
        classifier.fit(far, verbose=0)
    weighted = tf.data.Dataset.from_tensor_slices((X, LABELS, -np.ones(10, "float32"))).batch(4)
    with pytest.raises(ValueError, match="`x` must yield sample weights >= 0"):
        classifier.fit(weighted, verbose=0)
    complex_x = tf.data.Dataset.from_tensor_slices((X.astype("complex64"), LABELS)).batch(4)
    with pytest.raises(TypeError, match="real numeric tensors. Received: x with dtype complex64"):
        classifier.fit(complex_x, verbose=0)
    with pytest.raises(ValueError, match=r"`validation_data\[1\]` must hold class ids in \[0, 2\]"):
        classifier.fit(X, LABELS, validation_data=(X, LABELS + 3), verbose=0)


def test_label_range_follows_the_loss():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    binary = Trainer(model, keras.optimizers.SGD(0.1), "binary_crossentropy", jit_compile=False)
    with pytest.raises(ValueError, match=r"values in \[0, 1\] for the loss binary_crossentropy"):
        binary.fit(X, np.full((10, 3), 2.0, "float32"), verbose=0)
    binary.fit(X, np.full((10, 3), 0.25, "float32"), verbose=0)  # soft targets are fine
    ignoring = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    Trainer(model, keras.optimizers.SGD(0.1), ignoring, jit_compile=False).fit(
        X, np.where(LABELS == 2, -1, LABELS), verbose=0)  # the ignored class is allowed
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    Trainer(model, keras.optimizers.SGD(0.1), "mse", jit_compile=False).fit(
        X, np.full((10, 3), 7.0, "float32"), verbose=0)  # no range for a regression loss
