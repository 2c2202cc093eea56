"""Standard Keras callbacks have the same effects under the Trainer as under fit."""

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import GradientClipping
from keras_trainkit.optimizers.transforms import ClipByGlobalNorm
from keras_trainkit.training import Trainer

SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    # Noisy validation labels: val_loss turns up after a few epochs.
    xv = rng.normal(size=(32, 5)).astype("float32")
    yv = rng.integers(0, 2, size=32)
    return x, y, xv, yv


def model():
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(2)])


def run(use_trainer, callbacks, epochs=30):
    x, y, xv, yv = problem()
    net = model()
    if use_trainer:
        trainer = Trainer(net, keras.optimizers.Adam(0.05), SCE, ["accuracy"], jit_compile=False,
                          shuffle=False)
        history = trainer.fit(x, y, batch_size=16, epochs=epochs, validation_data=(xv, yv),
                              callbacks=callbacks, verbose=0)
    else:
        net.compile(optimizer=keras.optimizers.Adam(0.05), loss=SCE, metrics=["accuracy"])
        history = net.fit(x, y, batch_size=16, epochs=epochs, validation_data=(xv, yv),
                          callbacks=callbacks, shuffle=False, verbose=0)
    return net, history


def test_early_stopping_model_checkpoint_csv_logger(tmp_path):
    results = {}
    for use_trainer in (False, True):
        folder = tmp_path / ("trainer" if use_trainer else "fit")
        folder.mkdir()
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2,
                                             restore_best_weights=True)
        ckpt = keras.callbacks.ModelCheckpoint(str(folder / "best.keras"), monitor="val_loss",
                                               save_best_only=True)
        csv = keras.callbacks.CSVLogger(str(folder / "log.csv"))
        net, history = run(use_trainer, [stop, ckpt, csv])
        loaded = keras.models.load_model(folder / "best.keras")
        results[use_trainer] = dict(
            stopped=stop.stopped_epoch, best=stop.best, epochs=len(history.history["loss"]),
            weights=net.get_weights(), saved=loaded.get_weights(),
            csv=(folder / "log.csv").read_text().splitlines()[0],
        )
    fit, ours = results[False], results[True]
    assert 0 < ours["stopped"] < 29, "early stopping must trigger in this problem"
    assert ours["stopped"] == fit["stopped"] and ours["epochs"] == fit["epochs"]
    assert ours["best"] == pytest.approx(fit["best"], rel=1e-5)
    assert ours["csv"] == fit["csv"]
    for a, b, c in zip(ours["weights"], fit["weights"], ours["saved"]):
        np.testing.assert_allclose(a, b, atol=1e-5)  # best weights restored
        np.testing.assert_allclose(a, c, atol=1e-6)  # and saved by ModelCheckpoint


def test_tensorboard_reduce_lr_scheduler_terminate(tmp_path):
    for use_trainer in (False, True):
        logdir = tmp_path / ("trainer" if use_trainer else "fit")
        callbacks = [
            keras.callbacks.TensorBoard(str(logdir), update_freq="epoch"),
            keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.05 * 0.5 ** epoch),
            keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=100),
            keras.callbacks.TerminateOnNaN(),
        ]
        net, history = run(use_trainer, callbacks, epochs=3)
        assert history.history["learning_rate"] == pytest.approx([0.05, 0.025, 0.0125])
        for part in ("train", "validation"):
            events = list((logdir / part).glob("events.out.tfevents.*"))
            assert events and events[0].stat().st_size > 0, (use_trainer, part)
        assert float(net.optimizer.learning_rate) == pytest.approx(0.0125)


class _CrashAfterEpoch1(keras.callbacks.Callback):
    """Interrupts a fit after its second epoch, once that epoch is backed up."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("crash")


def test_backup_and_restore_resumes_the_epoch(tmp_path):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    x, y, _, _ = problem()
    trainer = Trainer(model(), keras.optimizers.SGD(0.1), SCE, jit_compile=False)
    with pytest.raises(RuntimeError, match="crash"):
        trainer.fit(x, y, epochs=4, callbacks=[backup, _CrashAfterEpoch1()], verbose=0)
    trainer = Trainer(model(), keras.optimizers.SGD(0.1), SCE, jit_compile=False)
    history = trainer.fit(x, y, epochs=4, callbacks=[backup], verbose=0)
    assert history.epoch == [2, 3]  # epoch 1 was backed up before the crash


@pytest.mark.parametrize("options, clipping, named", [
    (dict(gradient_transforms=["autoclip"]), None, "gradient transforms' state"),
    (dict(gradient_accumulation_steps=3), None, "partial gradient sum"),
    ({}, "autoclip", "GradientClipping('autoclip')'s AutoClip history"),
])
def test_backup_and_restore_is_refused_where_it_cannot_hold_the_trainers_state(tmp_path, options, clipping, named):
    """``BackupAndRestore`` saves the model and its optimizer: not a stateful transform's state
    (the Trainer's, or one a callback attaches) nor a partial gradient sum, so a run it
    restored would train differently. Refused before any training, naming the argument and
    ``checkpoint_dir``; nothing is written."""
    x, y, _, _ = problem()
    net = model()
    before = [w.copy() for w in net.get_weights()]
    trainer = Trainer(net, keras.optimizers.SGD(0.1), SCE, jit_compile=False, **options)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    callbacks = [backup] + ([GradientClipping(clipping)] if clipping else [])
    with pytest.raises(ValueError, match=r"callbacks.*BackupAndRestore") as refusal:
        trainer.fit(x, y, batch_size=16, epochs=2, callbacks=callbacks, verbose=0)
    assert named in str(refusal.value) and "checkpoint_dir" in str(refusal.value)
    assert int(trainer.optimizer.iterations) == 0 and not (tmp_path / "backup").exists()
    for a, b in zip(net.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    if clipping:
        return  # its remedy, AutoClip in gradient_transforms, is the first case
    # the same Trainer trains with its own checkpoints instead
    trainer.fit(x, y, batch_size=16, epochs=2, checkpoint_dir=str(tmp_path / "own"), verbose=0)
    assert int(trainer.optimizer.iterations) > 0


def test_checkpoint_dir_is_refused_with_a_clipping_callback_whose_state_it_cannot_hold(tmp_path):
    """The Trainer's checkpoints hold its own ``gradient_transforms``' state, not that of a
    transform a callback attaches: ``GradientClipping("autoclip")`` keeps AutoClip's history on
    the callback, so a resumed run would clip differently. Refused before any training, naming
    the remedy; ``GradientClipping("global_norm")`` (per-step statistics only) is accepted."""
    x, y, _, _ = problem()
    trainer = Trainer(model(), keras.optimizers.SGD(0.1), SCE, jit_compile=False)
    with pytest.raises(ValueError, match=r"callbacks.*GradientClipping\('autoclip'\).*checkpoint_dir") as refusal:
        trainer.fit(x, y, batch_size=16, epochs=2, checkpoint_dir=str(tmp_path / "refused"), verbose=0,
                    callbacks=[GradientClipping("autoclip")])
    assert "gradient_transforms=[AutoClip(" in str(refusal.value)
    assert int(trainer.optimizer.iterations) == 0 and not (tmp_path / "refused").exists()
    trainer.fit(x, y, batch_size=16, epochs=2, checkpoint_dir=str(tmp_path / "own"), verbose=0,
                callbacks=[GradientClipping("global_norm", max_norm=0.5)])
    assert int(trainer.optimizer.iterations) > 0 and (tmp_path / "own").exists()


def test_backup_and_restore_with_transforms_that_carry_nothing_resumes_exactly(tmp_path):
    """``ClipByGlobalNorm`` keeps only per-step statistics (``grad_norm``, ``clip_fraction``):
    nothing is lost, so ``BackupAndRestore`` is accepted and the restored run ends where the
    uninterrupted one does."""
    x, y, _, _ = problem()

    def trainer():
        return Trainer(model(), keras.optimizers.SGD(0.1), SCE, jit_compile=False, shuffle=False,
                       gradient_transforms=[ClipByGlobalNorm(0.05)])

    uninterrupted = trainer()
    uninterrupted.fit(x, y, batch_size=16, epochs=4, verbose=0)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="crash"):
        trainer().fit(x, y, batch_size=16, epochs=4, callbacks=[backup, _CrashAfterEpoch1()], verbose=0)
    resumed = trainer()
    history = resumed.fit(x, y, batch_size=16, epochs=4, callbacks=[backup], verbose=0)
    assert history.epoch == [2, 3]
    assert float(resumed.gradient_transforms[0].clip_fraction) > 0  # the clipping acted
    for a, b in zip(resumed.model.get_weights(), uninterrupted.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_progress_bar_like_fit(capsys):
    x, y, _, _ = problem()
    trainer = Trainer(model(), keras.optimizers.SGD(0.1), SCE, ["accuracy"], jit_compile=False)
    trainer.fit(x, y, batch_size=16, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "4/4" in out and "accuracy:" in out
    trainer.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""
