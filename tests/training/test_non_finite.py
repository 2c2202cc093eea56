"""The Trainer's non-finite policy looks at the gradients and the weights, not only the loss;
``steps_per_epoch`` ends the epochs of an infinite dataset."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.training import NonFiniteLossError, Trainer

BATCH = 8


class _NaNGradWhenFlagged(keras.layers.Layer):
    """Identity on ``h``; its gradient is NaN for a batch whose ``x[:, 0]`` holds a flag (> 100)."""

    def call(self, h, x):
        flagged = tf.reduce_max(x[:, 0]) > 100.0

        @tf.custom_gradient
        def ident(v):
            return v, lambda dy: dy * tf.where(flagged, np.nan, 1.0)

        return ident(h)


def _data(n=48):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = rng.normal(size=(n, 1)).astype("float32")
    x[3 * BATCH, 0] = 1000.0  # batch 3: NaN gradients, finite loss
    return x, y


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, _NaNGradWhenFlagged()(keras.layers.Dense(1)(hidden), inputs))


class _Losses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((batch, float(logs["loss"])))


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("on_nan", ["stop", "skip", "raise"])
def test_nan_gradients_with_a_finite_loss_are_never_applied(on_nan, jit_compile):
    x, y = _data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    model = _model()
    trainer = Trainer(model, keras.optimizers.Adam(0.01), "mse", jit_compile=jit_compile, on_nan=on_nan)
    losses = _Losses()
    if on_nan == "raise":
        with pytest.raises(NonFiniteLossError, match="epoch 1 \\(batch 4"):
            trainer.fit(dataset, epochs=2, verbose=0, callbacks=[losses])
    else:
        trainer.fit(dataset, epochs=2, verbose=0, callbacks=[losses])
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert all(np.isfinite(loss) for _, loss in losses.batches)
    assert trainer.skipped_steps == (2 if on_nan == "skip" else 1)
    updates = int(trainer.optimizer.iterations)
    if on_nan == "skip":  # 6 batches in each of 2 epochs, one skipped in each
        assert updates == 10
    else:  # stopped at the end of epoch 1: batches 0-2 applied, the rest of the epoch skipped
        assert updates == 3


def test_the_real_case_one_nan_in_a_dataset_batch_on_a_dense_relu_model():
    """The probe's case: a NaN input in batch 3 of a tf.data pipeline (oneDNN may zero it in the
    forward pass, leaving only the gradient NaN). Whatever the forward pass does, no weight is NaN."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = rng.integers(0, 3, size=48)
    x[3 * BATCH + 1, 2] = np.nan
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    trainer = Trainer(model, keras.optimizers.Adam(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True), on_nan="skip",
                      jit_compile=False)
    trainer.fit(dataset, epochs=1, verbose=0)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert trainer.skipped_steps == 1


def test_weights_that_overflow_stop_training_at_the_epoch_end():
    # One step per epoch: loss ~1e30 and gradients ~1e30 are finite, the update 1e30 * 1e30 is not.
    x = np.full((16, 2), 1e30, "float32")
    y = np.zeros((16, 1), "float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    trainer = Trainer(model, keras.optimizers.SGD(1e30), "mae", jit_compile=False, on_nan="raise")
    with pytest.raises(NonFiniteLossError, match="weights hold NaN or Inf after epoch 1"):
        trainer.fit(x, y, batch_size=16, epochs=3, verbose=0)


@pytest.mark.timeout(300)  # a regression would loop forever: fail it instead
def test_an_infinite_dataset_needs_steps_per_epoch():
    x, y = np.ones((8, 4), "float32"), np.ones((8, 1), "float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    trainer = Trainer(model, keras.optimizers.SGD(0.01), "mse", jit_compile=False)
    with pytest.raises(ValueError, match="infinite tf.data.Dataset.*Received: steps_per_epoch=None"):
        trainer.fit(dataset, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="Received: steps_per_epoch=0"):
        trainer.fit(dataset, epochs=1, verbose=0, steps_per_epoch=0)
    history = trainer.fit(dataset, epochs=3, verbose=0, steps_per_epoch=5)
    assert int(trainer.optimizer.iterations) == 15 and len(history.history["loss"]) == 3
