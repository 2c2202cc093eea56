"""Keras's ``EarlyStopping(restore_best_weights=True)`` with Schedule-Free: listed after
``SwapEvaluationWeights(swap_on_epoch=True)``, it restores the best epoch's evaluation
weights ``x``, the weights its ``val_loss`` was measured at, in ``model.fit`` and in the
Trainer (without ``swap_on_epoch`` it records, and restores, the training weights ``y``)."""

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import SwapEvaluationWeights
from keras_trainkit.optimizers import ScheduleFree
from keras_trainkit.training import Trainer

RNG = np.random.default_rng(0)
W = RNG.normal(size=(8, 1)).astype("float32")
X = RNG.normal(size=(256, 8)).astype("float32")
Y = X @ W + 0.5 * RNG.normal(size=(256, 1)).astype("float32")
X_VAL = RNG.normal(size=(64, 8)).astype("float32")
Y_VAL = X_VAL @ W + 3.0 * RNG.normal(size=(64, 1)).astype("float32")  # noisy: stops early


@pytest.mark.parametrize("runner", ["fit", "trainer"])
def test_the_restored_model_scores_the_best_validation_loss(runner):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    callbacks = [SwapEvaluationWeights(swap_on_epoch=True),
                 keras.callbacks.EarlyStopping("val_loss", patience=3, restore_best_weights=True)]
    kwargs = dict(epochs=40, batch_size=32, validation_data=(X_VAL, Y_VAL), verbose=0,
                  callbacks=callbacks)
    if runner == "fit":
        model.compile(ScheduleFree(keras.optimizers.SGD(0.05)), "mse")
        history = model.fit(X, Y, **kwargs)
    else:
        history = Trainer(model, ScheduleFree(keras.optimizers.SGD(0.05)), "mse").fit(X, Y, **kwargs)
    losses = history.history["val_loss"]
    assert len(losses) < 40 and int(np.argmin(losses)) < len(losses) - 1  # it stopped, and restored
    # the model's own weights now (no swap): the best epoch's x
    residual = keras.ops.convert_to_numpy(model(X_VAL)) - Y_VAL
    assert float(np.mean(residual ** 2)) == pytest.approx(min(losses), rel=1e-6)


def _early_stopped_trainer(restore):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    trainer = Trainer(model, ScheduleFree(keras.optimizers.SGD(0.05)), "mse")
    stop = keras.callbacks.EarlyStopping("val_loss", patience=3, restore_best_weights=restore)
    trainer.fit(X, Y, epochs=40, batch_size=32, validation_data=(X_VAL, Y_VAL), verbose=0,
                callbacks=[SwapEvaluationWeights(swap_on_epoch=True), stop])
    return trainer, stop.stopped_epoch


def test_a_further_fit_goes_on_from_the_last_y_with_the_restored_weights_as_x():
    """docs/optimizers.md#schedulefree: weights written after ``fit`` take the place of ``x``;
    the next ``fit`` goes on from the last ``y``. ``fit(epochs=0)`` runs only that resume."""
    restored, stopped = _early_stopped_trainer(restore=True)
    best_x = restored.model.get_weights()
    plain, plain_stopped = _early_stopped_trainer(restore=False)
    assert stopped == plain_stopped > 0  # the same run, but for the restore at its end
    restored.fit(X, Y, epochs=0, verbose=0)
    plain.fit(X, Y, epochs=0, verbose=0)
    last_y = plain.model.get_weights()
    for weight, expected, best in zip(restored.model.get_weights(), last_y, best_x):
        np.testing.assert_array_equal(weight, expected)  # the last y, not the restored weights
        assert not np.array_equal(weight, best)
    for x, best in zip(restored.optimizer.evaluation_weights(), best_x):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(x), best)
