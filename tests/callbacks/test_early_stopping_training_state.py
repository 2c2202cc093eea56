"""``EarlyStopping(restore_optimizer_state=True)`` puts back the whole training state of the best check.

The contract, on every path that trains: after the restore, a later ``fit``
continues exactly as a run that stopped at the best epoch would. Under the
``Trainer`` that state is more than the optimizer's variables: its gradient
transforms' state (AutoClip's history of norms) and the partial gradient sum
of ``gradient_accumulation_steps``; before, only the optimizer's were
restored and the continued run differed by up to 0.15.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.callbacks import EarlyStopping, GradientClipping
from keras_trainkit.optimizers import TransformedOptimizer
from keras_trainkit.optimizers.transforms import AutoClip
from keras_trainkit.training import Trainer

LR, CONTINUED_EPOCHS = 0.05, 3


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x @ rng.normal(size=(5, 1))).astype("float32")
    # Validating against targets of the opposite sign: the better the fit, the worse val_loss.
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # 4 batches, one order
    return train, (x[:32], -y[:32])


def _model():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
                             keras.layers.Dense(1)])


def _trainer_runner(transforms=(), **trainer_kwargs):
    def make():
        model = _model()
        trainer = Trainer(model, keras.optimizers.Adam(LR), "mse",
                          gradient_transforms=[transform() for transform in transforms], **trainer_kwargs)
        return model, trainer.fit, []
    return make


def _fit_runner(optimizer, callbacks=()):
    def make():
        model = _model()
        model.compile(optimizer(), "mse")
        return model, model.fit, [callback() for callback in callbacks]
    return make


RUNNERS = {
    "trainer_autoclip": _trainer_runner(transforms=[lambda: AutoClip(percentile=50)]),
    "trainer_accumulation": _trainer_runner(gradient_accumulation_steps=3),
    "fit_transformed_autoclip": _fit_runner(
        lambda: TransformedOptimizer(keras.optimizers.Adam(LR), [AutoClip(percentile=50)])),
    "fit_gradient_clipping_autoclip": _fit_runner(
        lambda: keras.optimizers.Adam(LR), callbacks=[lambda: GradientClipping("autoclip", percentile=50)]),
}


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_a_fit_after_the_restore_continues_as_a_run_stopped_at_the_best_epoch(runner):
    train, validation = _data()
    model, fit, callbacks = RUNNERS[runner]()
    stop = EarlyStopping(patience=3, restore_best_weights=True, restore_optimizer_state=True)
    fit(train, epochs=20, validation_data=validation, callbacks=[stop, *callbacks], verbose=0)
    assert stop.best_epoch == 0 and stop.stopped_epoch == 3  # three epochs of state to undo
    fit(train, epochs=CONTINUED_EPOCHS, callbacks=callbacks, verbose=0)

    reference, reference_fit, reference_callbacks = RUNNERS[runner]()
    reference_fit(train, epochs=stop.best_epoch + 1, callbacks=reference_callbacks, verbose=0)
    reference_fit(train, epochs=CONTINUED_EPOCHS, callbacks=reference_callbacks, verbose=0)
    for restored, expected in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(restored, expected)
