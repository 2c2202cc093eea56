"""Step counting under ``steps_per_execution`` when the epoch's last call is shorter.

``model.fit`` passes ``on_train_batch_end`` the index ``first + steps_per_execution - 1``
also for a last call that runs fewer steps (a 5-step epoch with ``steps_per_execution=2``
ends with ``batch=5``). The reference for "the step" is Keras's own
``optimizer.iterations`` after the call; the gradient norm of a recorded step is checked
against NumPy's gradient of that step.
"""

import keras
import numpy as np

from keras_trainkit.callbacks import EarlyStopping, TrainingMonitor
from tests.callbacks.linear_reference import two_layer_mse_gradients

BATCH, STEPS = 8, 5  # 5 steps per epoch, calls of 2, 2 and 1 steps


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * STEPS, 3)).astype("float32")
    y = (rng.normal(size=(BATCH * STEPS, 2)) * 5).astype("float32")
    return x, y


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="a"), keras.layers.Dense(2, name="b")])
    model.compile(keras.optimizers.SGD(0.05), "mse", steps_per_execution=2)
    return model


class _Iterations(keras.callbacks.Callback):
    """``optimizer.iterations`` after every call (Keras's count of the steps done)."""

    def __init__(self):
        super().__init__()
        self.after_call = []

    def on_train_batch_end(self, batch, logs=None):
        self.after_call.append(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))


def _numpy_global_gradient_norms(weights, x, y, epochs):
    """Global gradient L2 norm of every SGD(0.05) step of the two-layer linear model, by step (1-based)."""
    weights = [w.astype(np.float64) for w in weights]
    norms, step = {}, 0
    for _ in range(epochs):
        for i in range(0, len(x), BATCH):
            grads = two_layer_mse_gradients(weights, x[i:i + BATCH], y[i:i + BATCH])
            step += 1
            norms[step] = np.sqrt(sum(float((g ** 2).sum()) for g in grads))
            weights = [w - 0.05 * g for w, g in zip(weights, grads)]
    return norms


def test_training_monitor_records_at_the_optimizers_step_count():
    x, y = _data()
    model = _model()
    reference = _numpy_global_gradient_norms([v.numpy() for v in model.trainable_variables], x, y, epochs=2)
    monitor, iterations = TrainingMonitor(log_every_n_steps=3, spike_factor=100.0), _Iterations()
    model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[monitor, iterations])
    assert iterations.after_call == [2, 4, 5, 7, 9, 10]
    # the calls that reach steps 3, 6 and 9 end at steps 4, 7 and 9 (old code: 4, 6, 10, 12)
    assert [r["step"] for r in monitor.records] == [4, 7, 9]
    for record in monitor.records:
        np.testing.assert_allclose(record["gradient_norm/global"], reference[record["step"]], rtol=1e-4)
    assert monitor.step == 10


def test_early_stopping_checks_every_n_steps_at_the_optimizers_step_count():
    x, y = _data()
    model = _model()
    stop = EarlyStopping(monitor="loss", check_every_n_steps=3, patience=100, check_finite=False)
    model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[stop])
    assert [check[1] for check in stop.history] == [4, 7, 9]  # old code: [4, 6, 10, 12]
    assert stop._step == int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 10
