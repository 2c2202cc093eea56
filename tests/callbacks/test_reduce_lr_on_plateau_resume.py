"""``ReduceLROnPlateau``'s reduction of a learning-rate schedule survives every resume.

The reduction of a schedule is a ``ScaledSchedule``'s scale, kept outside the
optimizer's variables. Before, the Trainer's ``checkpoint_dir`` and a tuning
trial's checkpoint saved only variables: a resumed run went back to the
schedule's full rate with no word (weights 0.028 from the uninterrupted run's).
Now both save the scales beside the variables; ``BackupAndRestore``, which
cannot, warns under ``model.fit`` and is refused by the Trainer.
"""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit._compat.keras import raw_learning_rate
from keras_trainkit.callbacks import ReduceLROnPlateau
from keras_trainkit.optimizers import control
from keras_trainkit.schedules import ScaledSchedule
from keras_trainkit.training import Trainer
from keras_trainkit.tuning.epoch_checkpoint import EpochCheckpoint
from keras_trainkit.utils.checkpoints import CheckpointError, load_checkpoint, save_checkpoint

EPOCHS, CRASH_EPOCH = 4, 2


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x @ rng.normal(size=(5, 1))).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16), (x[:32], -y[:32])


def _model(schedule=True):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    rate = keras.optimizers.schedules.ExponentialDecay(0.05, 100, 0.9) if schedule else 0.05
    return model, keras.optimizers.SGD(rate)


def _plateau():
    # Validating against targets of the opposite sign: val_loss worsens after the first epoch, so
    # the rate is reduced at the end of epoch 1, before the crash, down to min_lr, and never again
    # (the counters, which a resume resets as Keras's callback does, play no part).
    return ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0, min_lr=0.03)


class _Crash(keras.callbacks.Callback):
    def __init__(self, epoch, batch=0):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise KeyboardInterrupt("crash")


def _trainer_run(folder=None, crash=None, every=None):
    model, optimizer = _model()
    train, validation = _data()
    trainer = Trainer(model, optimizer, "mse")
    callbacks = [_plateau()] + ([crash] if crash else [])
    trainer.fit(train, epochs=EPOCHS, validation_data=validation, callbacks=callbacks, verbose=0,
                checkpoint_dir=folder, checkpoint_every_n_steps=every)
    return model


@pytest.mark.parametrize("crash_batch, every", [(0, None), (2, 1)], ids=["epoch_end", "mid_epoch"])
def test_a_trainer_resumed_from_its_checkpoint_keeps_the_reduced_schedule(tmp_path, crash_batch, every):
    reference = _trainer_run()
    with pytest.raises(KeyboardInterrupt):
        _trainer_run(tmp_path, crash=_Crash(CRASH_EPOCH, crash_batch), every=every)
    _, meta, _ = load_checkpoint(tmp_path / "checkpoint.npz")
    scales = control.learning_rate_scales(reference)
    assert meta["learning_rate_scales"] == scales and 0.5 < scales[0] < 0.7  # 0.05 -> 0.03 at epoch 1
    resumed = _trainer_run(tmp_path)
    assert control.learning_rate_scales(resumed) == scales
    for left, right in zip(resumed.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)


def _trial_fit(folder, restore, epochs, initial_epoch=0):
    model, optimizer = _model()
    model.compile(optimizer, "mse")
    train, validation = _data()
    checkpoint = EpochCheckpoint(str(folder), restore=restore, trial_id="0",
                                 hyperparameters={"space": [], "values": {}})
    model.fit(train, epochs=epochs, initial_epoch=initial_epoch, validation_data=validation, verbose=0,
              callbacks=[_plateau(), checkpoint])
    return model


def test_a_tuning_trial_resumed_from_its_checkpoint_keeps_the_reduced_schedule(tmp_path):
    reference = _trial_fit(tmp_path / "reference", False, EPOCHS)
    _trial_fit(tmp_path / "trial", False, CRASH_EPOCH)  # the trial's process dies here
    resumed = _trial_fit(tmp_path / "trial", True, EPOCHS, initial_epoch=CRASH_EPOCH)
    scales = control.learning_rate_scales(reference)
    assert control.learning_rate_scales(resumed) == scales and 0.5 < scales[0] < 0.7
    for left, right in zip(resumed.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(left, right, rtol=1e-6, atol=1e-7)


def test_a_checkpoint_whose_scales_do_not_fit_is_refused_before_anything_is_restored(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _trainer_run(tmp_path, crash=_Crash(CRASH_EPOCH))
    arrays, meta, blobs = load_checkpoint(tmp_path / "checkpoint.npz")
    save_checkpoint(tmp_path / "checkpoint.npz", arrays, {**meta, "learning_rate_scales": [0.5, 0.5]},
                    blobs=blobs)
    model, optimizer = _model()
    train, validation = _data()
    before = [w.copy() for w in Trainer(model, optimizer, "mse").model.get_weights()]
    with pytest.raises(CheckpointError, match=r"learning-rate scales that do not fit .*scales=\[0.5, 0.5\]"):
        Trainer(model, optimizer, "mse").fit(train, epochs=EPOCHS, validation_data=validation, verbose=0,
                                            checkpoint_dir=tmp_path, callbacks=[_plateau()])
    for left, right in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(left, right)


def test_restore_learning_rate_scales_refuses_what_does_not_fit():
    model, optimizer = _model(schedule=False)
    model.compile(optimizer, "mse")
    model.optimizer.build(model.trainable_variables)
    assert control.learning_rate_scales(model) == [None]
    with pytest.raises(ValueError, match="learning rate is a float"):
        control.restore_learning_rate_scales(model, [0.5])
    with pytest.raises(ValueError, match=r"Argument `scales` must hold .* Received: scales=\[-1.0\]"):
        control.restore_learning_rate_scales(model, [-1.0])
    scheduled, optimizer = _model()
    scheduled.compile(optimizer, "mse")
    control.restore_learning_rate_scales(scheduled, [0.125])
    assert isinstance(raw_learning_rate(scheduled.optimizer), ScaledSchedule)
    assert control.learning_rate_scales(scheduled) == [0.125]
    control.restore_learning_rate_scales(scheduled, [None])  # saved unscaled: back to scale 1
    assert control.learning_rate_scales(scheduled) == [1.0]


@pytest.mark.parametrize("schedule", [True, False], ids=["schedule", "float"])
def test_backup_and_restore_under_fit_warns_that_a_schedules_reduction_is_lost(tmp_path, caplog, schedule):
    def run(crash):
        model, optimizer = _model(schedule)
        model.compile(optimizer, "mse")
        train, validation = _data()
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        crashes = [_Crash(CRASH_EPOCH)] if crash else []  # at epoch 3's start, after epoch 2's backup
        model.fit(train, epochs=EPOCHS, validation_data=validation, verbose=0,
                  callbacks=[backup, _plateau()] + crashes)

    with pytest.raises(KeyboardInterrupt):
        run(crash=True)
    with caplog.at_level(logging.WARNING, logger="keras_trainkit.callbacks.reduce_lr_on_plateau"):
        run(crash=False)
    warned = [r.getMessage() for r in caplog.records if "BackupAndRestore resumed" in r.getMessage()]
    if schedule:
        assert len(warned) == 1 and f"at epoch {CRASH_EPOCH} " in warned[0] and "checkpoint_dir" in warned[0]
    else:  # a float rate is an optimizer variable: the backup holds the reduction
        assert warned == []


def test_the_trainer_refuses_backup_and_restore_with_a_reduced_schedule(tmp_path):
    model, optimizer = _model()
    train, validation = _data()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(ValueError, match="ReduceLROnPlateau's reductions of the learning-rate schedule"):
        Trainer(model, optimizer, "mse").fit(train, epochs=2, validation_data=validation, verbose=0,
                                            callbacks=[backup, _plateau()])
    assert not (tmp_path / "backup").exists()
    float_model, float_optimizer = _model(schedule=False)  # its reduction is in the backup
    Trainer(float_model, float_optimizer, "mse").fit(train, epochs=2, validation_data=validation, verbose=0,
                                                    callbacks=[backup, _plateau()])
