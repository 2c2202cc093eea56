"""Resume with ``checkpoint_dir``: a run interrupted and restarted must end where the
uninterrupted run ends, and a checkpoint of another optimizer must be refused untouched."""

import os

import keras
import numpy as np
import pytest

from keras_trainkit.training import BatchSizeSchedule, Trainer
from keras_trainkit.utils.checkpoints import CheckpointError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(22, 4)).astype("float32")
Y = RNG.normal(size=(22, 1)).astype("float32")


class Crash(Exception):
    pass


class CrashAtEpoch(keras.callbacks.Callback):
    """Stands in for a kill at the start of ``epoch``: only the checkpoint file survives."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Crash(epoch)


class BatchesPerEpoch(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.batches = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.batches[epoch] = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches[max(self.batches)] += 1


def fresh_trainer(optimizer=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    return Trainer(model, optimizer or keras.optimizers.SGD(0.05), "mse", jit_compile=False, seed=3)


def schedule_fit(folder, crash_at=None):
    """6 epochs of 2 steps; batch size 4 (6 batches a pass), 8 from epoch 2 (3 batches a pass)."""
    trainer, seen = fresh_trainer(), BatchesPerEpoch()
    callbacks = [seen] + ([CrashAtEpoch(crash_at)] if crash_at is not None else [])
    try:
        trainer.fit(X, Y, batch_size=BatchSizeSchedule(initial=4, boundaries={2: 8}), steps_per_epoch=2,
                    epochs=6, verbose=0, checkpoint_dir=folder, callbacks=callbacks)
    except Crash:
        pass
    return [w.numpy() for w in trainer.model.weights], seen.batches


def test_batch_size_schedule_with_steps_per_epoch_resumes_inside_the_pass_it_stopped_in(tmp_path):
    # Uninterrupted: epoch 2 starts a pass of 3 batches of 8 and draws 2, epoch 3 the one
    # left (cut short, as fit does). Resumed at epoch 3, the plan took the restored pass
    # for one of batch size 4 and started a new pass: 2 steps in epoch 3 instead of 1,
    # weights off by 0.044.
    reference, reference_batches = schedule_fit(str(tmp_path / "uninterrupted"))
    assert reference_batches == {0: 2, 1: 2, 2: 2, 3: 1, 4: 2, 5: 1}
    folder = str(tmp_path / "resumed")
    schedule_fit(folder, crash_at=3)
    resumed, resumed_batches = schedule_fit(folder)
    assert resumed_batches == {epoch: reference_batches[epoch] for epoch in range(3, 6)}
    for ours, theirs in zip(resumed, reference):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_a_checkpoint_of_another_optimizer_with_the_same_shapes_is_refused_untouched(tmp_path):
    # SGD with momentum keeps one slot per weight, as RMSprop does: same count and shapes.
    # RMSprop used to resume from it, taking SGD's momenta for its velocities.
    folder = str(tmp_path / "ckpt")
    fresh_trainer(keras.optimizers.SGD(0.05, momentum=0.9)).fit(X, Y, batch_size=8, epochs=1, verbose=0,
                                                                checkpoint_dir=folder)
    path = os.path.join(folder, "checkpoint.npz")
    with open(path, "rb") as handle:
        saved = handle.read()
    trainer = fresh_trainer(keras.optimizers.RMSprop(0.01))
    trainer.fit(X[:8], Y[:8], batch_size=8, epochs=1, verbose=0)  # builds every variable
    before = [v.numpy().copy() for v in trainer.model.variables + trainer.optimizer.variables]
    with pytest.raises(CheckpointError, match=r"another model or optimizer: its variable \d+ is 'sgd/.*"
                                              r"this fit's is 'rm_?sprop/"):
        trainer.fit(X, Y, batch_size=8, epochs=2, verbose=0, checkpoint_dir=folder)
    after = [v.numpy() for v in trainer.model.variables + trainer.optimizer.variables]
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)
    with open(path, "rb") as handle:
        assert handle.read() == saved


def test_the_same_script_rerun_in_one_process_still_resumes(tmp_path):
    # Keras names the second model's layers dense_1, sequential_1, ...: not another model.
    folder = str(tmp_path / "ckpt")
    first = fresh_trainer(keras.optimizers.Adam(0.01))
    first.fit(X, Y, batch_size=8, epochs=1, verbose=0, checkpoint_dir=folder)
    second = fresh_trainer(keras.optimizers.Adam(0.01))
    second.fit(X, Y, batch_size=8, epochs=1, verbose=0, checkpoint_dir=folder)  # at its end: nothing to do
    for ours, theirs in zip(second.model.weights, first.model.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def _spectral_norm_fit(folder, crash_at=None):
    """3 epochs of a model whose kernel has a SpectralNorm penalty, a new model each call
    (as a restarted process builds it; fixed names, since ``u``'s start is keyed by path)."""
    from keras_trainkit.regularizers import SpectralNorm

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
        6, kernel_regularizer=SpectralNorm(0.5), name="penalized"), keras.layers.Dense(1, name="out")], name="net")
    trainer = Trainer(model, keras.optimizers.SGD(0.1), "mse", jit_compile=False, seed=3)
    try:
        history = trainer.fit(X, Y, batch_size=4, epochs=3, verbose=0, checkpoint_dir=folder,
                              callbacks=[CrashAtEpoch(crash_at)] if crash_at is not None else [])
    except Crash:
        return None, None
    return [w.numpy() for w in model.weights], history.history["loss"]


def test_a_spectral_norm_power_iteration_resumes_with_the_weights(tmp_path):
    # SpectralNorm's u is not a model variable and was not in the checkpoint: the resumed
    # run restarted it from its start vector, and epochs 1-2 differed (loss 1.607 against
    # 1.738, weights by 0.1, in the first reproduction).
    reference, reference_losses = _spectral_norm_fit(str(tmp_path / "uninterrupted"))
    folder = str(tmp_path / "resumed")
    _spectral_norm_fit(folder, crash_at=1)
    resumed, resumed_losses = _spectral_norm_fit(folder)
    assert resumed_losses == reference_losses[1:]
    for ours, theirs in zip(resumed, reference):
        np.testing.assert_array_equal(ours, theirs)
