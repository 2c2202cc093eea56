"""``GradientClipping("autoclip")`` keeps AutoClip's history of norms from one ``fit`` to the next.

AutoClip (Seetharaman et al. 2020) clips the global gradient norm at the
``p``-th percentile of all norms seen so far. Reference: a NumPy transcription
of SGD with AutoClip over the concatenated steps of two ``fit`` calls (and
``TransformedOptimizer([AutoClip])``, which keeps its state in the optimizer).
"""

import logging

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import GradientClipping
from keras_trainkit.optimizers import TransformedOptimizer
from keras_trainkit.optimizers.transforms import AutoClip
from tests.callbacks.linear_reference import two_layer_mse_gradients

BATCH, LR, PERCENTILE = 8, 0.05, 10.0


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    return x, (rng.normal(size=(32, 2)) * 5).astype("float32")


def _numpy_autoclip_sgd(weights, x, y, epochs):
    """SGD on a two-layer linear model, the global norm clipped at the running percentile."""
    weights, norms = [w.astype(np.float64) for w in weights], []
    for _ in range(epochs):
        for i in range(0, len(x), BATCH):
            grads = two_layer_mse_gradients(weights, x[i:i + BATCH], y[i:i + BATCH])
            norm = np.sqrt(sum(float((g ** 2).sum()) for g in grads))
            norms.append(norm)
            scale = min(1.0, np.percentile(norms, PERCENTILE) / norm)
            weights = [w - LR * scale * g for w, g in zip(weights, grads)]
    return weights


def test_autoclip_history_carries_over_to_the_next_fit():
    x, y = _data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(LR), "mse")
    expected = _numpy_autoclip_sgd([v.numpy() for v in model.trainable_variables], x, y, epochs=2)
    clip = GradientClipping("autoclip", percentile=PERCENTILE)
    for _ in range(2):
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[clip])
    for variable, reference in zip(model.trainable_variables, expected):
        # old code (history restarted by the second fit): off by 1.5e-2
        np.testing.assert_allclose(variable.numpy(), reference, atol=1e-5)


class _Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("crash")


def _model(optimizer=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    model.compile(optimizer or keras.optimizers.SGD(LR), "mse")
    return model


def _crash_and_resume(backup_dir, make_model, make_callbacks, backup_first=True):
    """Train 4 epochs with ``BackupAndRestore``, crashing after epoch 1; rerun; the rerun's model."""
    x, y = _data()

    def callbacks(*extra):
        backup = keras.callbacks.BackupAndRestore(str(backup_dir))
        ours = make_callbacks()
        return [backup, *ours, *extra] if backup_first else [*ours, backup, *extra]

    with pytest.raises(RuntimeError, match="crash"):
        make_model().fit(x, y, batch_size=BATCH, epochs=4, shuffle=False, verbose=0, callbacks=callbacks(_Crash()))
    model = make_model()
    history = model.fit(x, y, batch_size=BATCH, epochs=4, shuffle=False, verbose=0, callbacks=callbacks())
    assert history.epoch == [2, 3]
    return model


def _uninterrupted(make_model, make_callbacks):
    x, y = _data()
    model = make_model()
    model.fit(x, y, batch_size=BATCH, epochs=4, shuffle=False, verbose=0, callbacks=make_callbacks())
    return model


@pytest.mark.parametrize("backup_first", [True, False])
def test_a_backup_restore_that_loses_autoclips_history_is_reported(tmp_path, caplog, backup_first):
    """``BackupAndRestore`` saves the model and the compiled optimizer, not the attached AutoClip's
    history: the resumed run clips differently, and says so (whichever callback comes first)."""
    make_callbacks = lambda: [GradientClipping("autoclip", percentile=PERCENTILE)]  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="keras_trainkit.callbacks.gradient_clipping"):
        _crash_and_resume(tmp_path, _model, make_callbacks, backup_first)
    warnings = [r.getMessage() for r in caplog.records if "BackupAndRestore" in r.getMessage()]
    assert len(warnings) == 1, caplog.text  # on the resumed run only
    assert "epoch 2" in warnings[0] and "history" in warnings[0] and "TransformedOptimizer" in warnings[0]


def test_a_backup_restore_without_carried_clipping_state_resumes_exactly_and_silently(tmp_path, caplog):
    make_callbacks = lambda: [GradientClipping("global_norm", max_norm=0.5)]  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="keras_trainkit.callbacks.gradient_clipping"):
        resumed = _crash_and_resume(tmp_path, _model, make_callbacks)
    assert not [r for r in caplog.records if "BackupAndRestore" in r.getMessage()]
    for a, b in zip(resumed.get_weights(), _uninterrupted(_model, make_callbacks).get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_autoclip_compiled_in_resumes_exactly_from_a_backup(tmp_path):
    """The remedy the warning names: compiled in, AutoClip's history is optimizer state, saved."""
    make_model = lambda: _model(TransformedOptimizer(keras.optimizers.SGD(LR), [AutoClip(PERCENTILE)]))  # noqa: E731
    resumed = _crash_and_resume(tmp_path, make_model, list)
    uninterrupted = _uninterrupted(make_model, list)
    assert int(uninterrupted.optimizer.transforms[0].count) == 16
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["global_norm", "value", "agc", "autoclip"])
def test_carries_state_says_whether_the_attached_transform_does(mode):
    """What the Trainer's refusals read (``GradientClipping.carries_state``) agrees with the
    transform the callback attaches (``carried_variables``, checked in
    tests/optimizers/test_transform_carried_state.py)."""
    x, y = _data()
    clip = GradientClipping(mode)
    _model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[clip])
    assert clip.carries_state == bool(clip.transform.carried_variables) == (mode == "autoclip")
