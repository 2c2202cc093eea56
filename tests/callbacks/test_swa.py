"""SWA mechanics: the swapped-in weights are the numpy average of the snapshots,
the SWA learning-rate schedule, BatchNorm recomputation, checkpoints and resume."""

import copy

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import SWA


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    return x, y


def _model(batch_norm=False, lr=0.05):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((4,))]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(momentum=0.5))
    layers += [keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    return model


class _Snapshots(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights, self.lrs = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.lrs.append(float(self.model.optimizer.learning_rate.numpy()))

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([v.numpy().copy() for v in self.model.trainable_variables])


@pytest.mark.parametrize("start,frequency,epochs,expected", [(2, 1, 5, [2, 3, 4]), (1, 2, 6, [1, 3, 5])])
def test_swapped_weights_are_the_numpy_average(start, frequency, epochs, expected):
    x, y = _data()
    model = _model()
    snaps = _Snapshots()
    swa = SWA(start_epoch=start, frequency=frequency)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False, callbacks=[snaps, swa])
    assert swa.averaged_epochs == expected and swa.n_averaged == len(expected)
    for i, variable in enumerate(model.trainable_variables):
        stack = np.stack([snaps.weights[e][i].astype(np.float64) for e in expected])
        np.testing.assert_allclose(variable.numpy(), stack.mean(axis=0), rtol=1e-6, atol=1e-7)
    # the last epoch's weights differ from the average: something was swapped in
    assert not np.array_equal(model.trainable_variables[0].numpy(), snaps.weights[-1][0])


def test_swa_learning_rate_schedule_and_restore():
    x, y = _data()
    model = _model(lr=0.1)
    swa = SWA(start_epoch=2, swa_learning_rate=0.01, anneal_epochs=2, anneal_strategy="linear")
    snaps = _Snapshots()
    model.fit(x, y, batch_size=16, epochs=5, verbose=0, callbacks=[swa, snaps])
    # epochs 0, 1: 0.1; epoch 2: t = 1/2 -> 0.055; epochs 3, 4: 0.01
    np.testing.assert_allclose(snaps.lrs, [0.1, 0.1, 0.055, 0.01, 0.01], rtol=1e-6)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.1)
    swa = SWA(start_epoch=0, swa_learning_rate=0.0, anneal_epochs=2, anneal_strategy="cos")
    snaps = _Snapshots()
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[swa, snaps])
    # t = 1/2: 0 + 0.1 * (1 + cos(pi/2)) / 2 = 0.05
    np.testing.assert_allclose(snaps.lrs, [0.05, 0.0, 0.0], atol=1e-7)


def test_batch_norm_statistics_recomputed_over_bn_data():
    x, y = _data(n=64)
    model = _model(batch_norm=True)
    swa = SWA(start_epoch=1, bn_data=(x, y), bn_batch_size=16)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[swa])
    bn = model.layers[0]
    batches = x.reshape(4, 16, 4).astype(np.float64)
    np.testing.assert_allclose(bn.moving_mean.numpy(), batches.mean(axis=1).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), batches.var(axis=1).mean(axis=0), rtol=1e-5)
    assert bn.momentum == 0.5


def test_checkpoint_after_swa_holds_the_average(tmp_path):
    x, y = _data()
    model = _model()
    path = tmp_path / "last.weights.h5"
    swa = SWA(start_epoch=1)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0,
              callbacks=[swa, keras.callbacks.ModelCheckpoint(str(path), save_weights_only=True)])
    fresh = _model()
    fresh.load_weights(str(path))
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_state_file_resumes_an_interrupted_run(tmp_path):
    x, y = _data()
    reference = _model()
    full = SWA(start_epoch=1)
    reference.fit(x, y, batch_size=16, epochs=4, verbose=0, shuffle=False, callbacks=[full])

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    state = tmp_path / "swa.npz"
    backup = str(tmp_path / "backup")
    model = _model()
    with pytest.raises(RuntimeError):
        model.fit(x, y, batch_size=16, epochs=4, verbose=0, shuffle=False,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), SWA(start_epoch=1, state_path=state),
                             Interrupt()])
    model = _model()
    resumed = SWA(start_epoch=1, state_path=state)
    model.fit(x, y, batch_size=16, epochs=4, verbose=0, shuffle=False,
              callbacks=[keras.callbacks.BackupAndRestore(backup), resumed])
    assert resumed.averaged_epochs == [1, 2, 3]
    for a, b in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_swap_for_validation_uses_the_average():
    x, y = _data()
    model = _model()
    snaps = _Snapshots()
    swa = SWA(start_epoch=0, swap_for_validation=True)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_data=(x, y),
                        callbacks=[snaps, swa])
    # epoch 1's validation ran before epoch 1 was averaged: the average of epoch 0 only
    probe = _model()
    probe.set_weights([w.copy() for w in snaps.weights[0]])
    assert history.history["val_loss"][1] == pytest.approx(probe.evaluate(x, y, verbose=0), rel=1e-5)


def test_reuse_deepcopy_and_bad_arguments():
    x, y = _data()
    swa = SWA(start_epoch=0, bn_data=x)
    clone = copy.deepcopy(swa)
    assert clone.bn_data is x and clone.get_config() == swa.get_config()
    model = _model()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[swa])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[swa])
    assert swa.n_averaged == 1  # reset in on_train_begin
    for kwargs, name in [({"frequency": 0}, "frequency"), ({"anneal_strategy": "step"}, "anneal_strategy"),
                         ({"swa_learning_rate": -1.0}, "swa_learning_rate")]:
        with pytest.raises(ValueError, match=f"Received: {name}="):
            SWA(**kwargs)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_schedule_is_annealed_from_its_current_value_like_torch_swalr(jit_compile):
    """Warm-up + cosine is what guides recommend: SWA anneals from the schedule's value at
    ``start_epoch`` to the SWA rate (torch's SWALR), then the schedule comes back."""
    x, y = _data()  # 64 examples, batch 32: 2 updates per epoch
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse", jit_compile=jit_compile)
    snaps = _Snapshots()
    swa = SWA(start_epoch=2, swa_learning_rate=0.01, anneal_epochs=2, anneal_strategy="linear")
    model.fit(x, y, batch_size=32, epochs=5, shuffle=False, verbose=0, callbacks=[swa, snaps])
    lr0 = 0.1 * 0.5 ** 2  # the schedule after the 4 updates of epochs 0-1
    expected = [0.1, 0.1 * 0.5, 0.5 * lr0 + 0.5 * 0.01, 0.01, 0.01]
    np.testing.assert_allclose(snaps.lrs, expected, rtol=1e-5)
    assert model.optimizer.learning_rate is not None and model.optimizer.get_config()["learning_rate"]["class_name"] \
        == "ExponentialDecay"
    # The annealed rate really drove the updates: epoch 3 equals SGD at 0.01 (epoch 4's end
    # snapshot already holds the swapped-in average).
    probe = _model(lr=0.01)
    probe.set_weights([w.copy() for w in snaps.weights[2]])
    probe.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(probe.get_weights(), snaps.weights[3]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_state_file_damaged_foreign_or_old(tmp_path):
    """A damaged state or one for other weights is refused (and left alone); a 0.1 file resumes."""
    from keras_trainkit.utils.checkpoints import CheckpointError

    x, y = _data()
    state = tmp_path / "swa.npz"
    model = _model()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[SWA(start_epoch=0, state_path=state)])
    good = state.read_bytes()
    state.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="swa.npz.*damaged or truncated"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[SWA(start_epoch=0, state_path=state)])
    state.write_bytes(good)
    keras.utils.set_random_seed(0)
    wider = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5), keras.layers.Dense(1)])
    wider.compile("sgd", "mse")
    with pytest.raises(CheckpointError, match="other variables"):
        wider.fit(x, y, epochs=1, verbose=0, callbacks=[SWA(start_epoch=0, state_path=state)])
    assert state.read_bytes() == good  # nothing overwritten
    # keras_trainkit 0.1 wrote sum_<i>, n_averaged and averaged_epochs without a header.
    sums = [np.ones(v.shape) for v in model.trainable_variables]
    np.savez(tmp_path / "old.npz", n_averaged=np.array(3), averaged_epochs=np.array([0, 1, 2]),
             **{f"sum_{i}": total for i, total in enumerate(sums)})
    resumed = SWA(start_epoch=5, state_path=tmp_path / "old.npz")
    # resumed where that average ends (an earlier start is another run: test_swa_state_identity.py)
    _model().fit(x, y, epochs=4, initial_epoch=3, verbose=0, callbacks=[resumed])
    assert resumed.n_averaged == 3 and resumed.averaged_epochs == [0, 1, 2]
    for average in resumed.averaged_weights():
        np.testing.assert_allclose(average, 1.0 / 3.0, rtol=1e-6)
