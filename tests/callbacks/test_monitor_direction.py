"""mode="auto": the direction of a watched metric comes from the model's compiled metrics.

Keras infers it in a non-public class (``MonitorCallback``, Keras 3.11+); the
callbacks own that logic, so these hold on every Keras in the tested range.
"""

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import EarlyStopping, ReduceLROnPlateau


def _score(y_true, y_pred):
    """A user's metric function: Keras knows no direction for it."""
    return keras.ops.mean(y_pred)


def _compiled_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(
        optimizer="sgd",
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc"), keras.metrics.MeanSquaredError(name="mse"), _score],
    )
    x = np.array([[0.0, 1.0], [1.0, 0.0]], "float32")
    model.evaluate(x, np.array([0.0, 1.0], "float32"), verbose=0)  # builds the compiled metrics
    return model


def _best_after(callback, monitor, values):
    model = _compiled_model()
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {monitor: value})
    return callback.best


@pytest.mark.parametrize(
    "monitor, best",
    [
        ("val_accuracy", 0.6),  # Keras: accuracy goes up
        ("auc", 0.6),  # up, without the val_ prefix too
        ("val_mse", 0.5),  # MeanSquaredError goes down, whatever its name
        ("val_loss", 0.5),
        ("val_mean_error", 0.5),  # not a compiled metric: a name ending in "error" goes down
    ],
)
def test_auto_mode_takes_the_direction_keras_gives(monitor, best):
    stop = EarlyStopping(monitor=monitor, mode="auto", patience=10)
    assert _best_after(stop, monitor, [0.5, 0.6, 0.55]) == pytest.approx(best)


def test_auto_mode_refuses_a_metric_without_a_direction():
    stop = EarlyStopping(monitor="val__score", mode="auto")
    with pytest.raises(ValueError, match="mode='min' or mode='max'"):
        _best_after(stop, "val__score", [0.5])


def test_explicit_mode_needs_no_direction():
    stop = EarlyStopping(monitor="val__score", mode="max", patience=10)
    assert _best_after(stop, "val__score", [0.5, 0.6, 0.55]) == pytest.approx(0.6)


def test_reduce_lr_on_plateau_infers_accuracy_goes_up():
    """Rising accuracy is progress: no reduction with patience 1."""
    model = _compiled_model()
    reduce = ReduceLROnPlateau(monitor="val_accuracy", mode="auto", factor=0.5, patience=1)
    reduce.set_model(model)
    reduce.on_train_begin()
    for epoch, value in enumerate([0.5, 0.6, 0.7, 0.8]):
        reduce.on_epoch_begin(epoch)
        reduce.on_epoch_end(epoch, {"val_accuracy": value})
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
