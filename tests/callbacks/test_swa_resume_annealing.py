"""SWA's learning-rate annealing continues where it was after a resumed run.

Reference: PyTorch's ``torch.optim.swa_utils.SWALR`` (a resumed torch run loads the
scheduler's state, so its rates are those of an uninterrupted one). ``SWA``'s epoch
``start_epoch + k`` trains at SWALR's rate after ``k + 1`` steps (the docstring's
``t = (epoch - start_epoch + 1) / anneal_epochs``).
"""

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import SWA

START, ANNEAL, LR0, SWA_LR, EPOCHS, CRASH = 1, 4, 0.1, 0.01, 7, 3


def _torch_swalr_rates(steps):
    torch = pytest.importorskip("torch")
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=LR0)
    scheduler = torch.optim.swa_utils.SWALR(optimizer, swa_lr=SWA_LR, anneal_epochs=ANNEAL,
                                            anneal_strategy="linear")
    rates = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


class _Rates(keras.callbacks.Callback):
    def __init__(self, rates):
        super().__init__()
        self.rates = rates

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.setdefault(self.epoch, float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


class _Crash(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == CRASH:
            raise RuntimeError("interrupted")


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(LR0), "mse")
    return model


def test_resumed_run_anneals_like_torch_swalr(tmp_path):
    expected = _torch_swalr_rates(EPOCHS - START)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 2)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
    rates = {}

    def fit(*extra):
        swa = SWA(start_epoch=START, swa_learning_rate=SWA_LR, anneal_epochs=ANNEAL,
                  state_path=tmp_path / "swa.npz")
        model = _model()
        model.fit(x, y, batch_size=8, epochs=EPOCHS, shuffle=False, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "backup")), swa, _Rates(rates),
                             *extra])
        return model, swa

    with pytest.raises(RuntimeError, match="interrupted"):
        fit(_Crash())
    model, swa = fit()
    assert swa.averaged_epochs == list(range(START, EPOCHS))
    # old code: epoch 3 at 0.02125 (annealed from the restored 0.055) against SWALR's 0.0325
    np.testing.assert_allclose([rates[e] for e in range(START, EPOCHS)], expected, rtol=1e-6)
    # the original rate is put back at the end (old code: 0.055, the rate restored by the backup)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(LR0)
