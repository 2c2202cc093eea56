"""``ReduceLROnPlateau`` refuses to go on when another callback sets the rate it lowered.

Before, a ``HyperparameterScheduler("learning_rate", ...)`` or Keras's
``LearningRateScheduler`` in the same fit set the rate back at the next epoch or
step: every reduction was undone, the run trained at the scheduler's rate, and
nothing said so.
"""

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import HyperparameterScheduler, ReduceLROnPlateau
from keras_trainkit.training import Trainer

OTHERS = {
    "hyperparameter_scheduler_epoch": lambda: HyperparameterScheduler("learning_rate", lambda epoch: 0.05,
                                                                      frequency="epoch"),
    "hyperparameter_scheduler_step": lambda: HyperparameterScheduler("learning_rate", lambda step: 0.05),
    "keras_learning_rate_scheduler": lambda: keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.05),
}


def _fit(loop, callbacks, epochs=4):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    # Validating against targets of the opposite sign: val_loss worsens, the rate is halved.
    arguments = dict(batch_size=16, epochs=epochs, validation_data=(x, -y), verbose=0, callbacks=callbacks)
    if loop == "trainer":
        return Trainer(model, keras.optimizers.SGD(0.05), "mse", shuffle=False).fit(x, y, **arguments)
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model.fit(x, y, shuffle=False, **arguments)


@pytest.mark.parametrize("loop", ["fit", "trainer"])
@pytest.mark.parametrize("other", sorted(OTHERS))
@pytest.mark.parametrize("plateau_first", [True, False])
def test_another_callback_setting_the_lowered_rate_is_refused(loop, other, plateau_first):
    plateau = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0)
    callbacks = [plateau, OTHERS[other]()] if plateau_first else [OTHERS[other](), plateau]
    with pytest.raises(ValueError, match=r"lowered the learning rate of sgd\w* to 0\.025 at the end of epoch 2, "
                                         r"but at the end of epoch 3 it was 0\.05: another callback sets it"):
        _fit(loop, callbacks)


@pytest.mark.parametrize("loop", ["fit", "trainer"])
def test_a_scheduler_beside_a_plateau_that_never_lowers_the_rate_is_accepted(loop):
    history = _fit(loop, [keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.05 * 0.5 ** epoch),
                          ReduceLROnPlateau(monitor="val_loss", patience=100)], epochs=3)
    assert history.history["learning_rate"] == pytest.approx([0.05, 0.025, 0.0125])


def test_the_plateau_alone_keeps_lowering():
    history = _fit("fit", [ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0)])
    assert history.history["learning_rate"] == pytest.approx([0.05, 0.05, 0.025, 0.0125])  # logged before the cut
