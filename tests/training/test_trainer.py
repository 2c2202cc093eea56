"""Core behaviour of the Trainer: equivalence with fit, models, data, NaN policy, hooks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.training import NonFiniteLossError, Trainer

ROOT = Path(__file__).resolve().parents[2]
SCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def data(n=64, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype("float32"), rng.integers(0, classes, size=n)


def dense(seed=0, d=6, classes=3):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(8, activation="tanh"),
                             keras.layers.Dense(classes)])


def test_same_weights_and_logs_as_fit():
    # Deterministic ops are process-wide, so the comparison runs in a subprocess:
    # NumPy arrays (fit with shuffle=False) and a tf.data.Dataset (steps_per_execution=2).
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests/training/_equivalence_script.py"), "arrays", "dataset"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for mode, diffs in json.loads(result.stdout.strip().splitlines()[-1]).items():
        assert diffs["weights"] <= 1e-5, mode
        assert diffs["loss"] <= 1e-6 and diffs["accuracy"] <= 1e-6, mode


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(3)

    def call(self, x, training=False):
        return self.out(self.hidden(x))


def functional():
    inputs = keras.Input((6,))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(8)(inputs)))


@pytest.mark.parametrize("build", [dense, functional, Subclassed], ids=["sequential", "functional",
                                                                       "subclassed"])
def test_any_model_learns(build):
    keras.utils.set_random_seed(0)
    x, y = data()
    trainer = Trainer(build(), keras.optimizers.Adam(0.05), SCE, ["accuracy"], jit_compile=False)
    history = trainer.fit(x, y, batch_size=16, epochs=8, verbose=0)
    assert isinstance(history, keras.callbacks.History)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert set(history.history) == {"loss", "accuracy"}
    assert trainer.predict(x).shape == (64, 3)
    loss, acc = trainer.evaluate(x, y, verbose=0)
    assert 0.0 <= acc <= 1.0 and np.isfinite(loss)


def test_steps_per_execution_gives_the_same_weights_and_batches_callbacks():
    x, y = data()
    weights, batches = [], []
    for k in (1, 3):
        seen = []
        probe = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))
        model = dense()
        Trainer(model, keras.optimizers.SGD(0.1), SCE, jit_compile=False, shuffle=False,
                steps_per_execution=k).fit(x, y, batch_size=8, epochs=2, callbacks=[probe], verbose=0)
        weights.append(model.get_weights())
        batches.append(seen)
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert batches[0] == list(range(8)) * 2
    assert batches[1] == [2, 5, 7] * 2  # one call per 3 steps, the last one partial


class OrderRecorder(Trainer):
    """A Trainer whose step also writes the ids (column 0 of x) of its batch, in order."""

    def __init__(self, *args, capacity, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = tf.Variable(tf.fill([capacity], -1))
        self.position = tf.Variable(0)

    def train_step(self, data):
        ids = tf.cast(data[0][:, 0], tf.int32)
        positions = self.position + tf.range(tf.shape(ids)[0])
        self.seen.scatter_nd_update(positions[:, None], ids)
        self.position.assign_add(tf.shape(ids)[0])
        return super().train_step(data)


@pytest.mark.parametrize("steps_per_execution, jit_compile", [(1, False), (3, False), (3, True)])
def test_array_epochs_are_whole_permutations_reshuffled_each_epoch(steps_per_execution, jit_compile):
    # 50 examples in batches of 8: 7 steps an epoch, so calls of 3 steps straddle the
    # epoch ends of the one iterator a fit keeps over its epochs.
    n, epochs = 50, 4
    x, y = data(n)
    x[:, 0] = np.arange(n)

    def order(seed):
        trainer = OrderRecorder(dense(), keras.optimizers.SGD(0.01), SCE, seed=seed,
                                jit_compile=jit_compile, steps_per_execution=steps_per_execution,
                                capacity=n * epochs + 8)
        trainer.fit(x, y, batch_size=8, epochs=epochs, verbose=0)
        assert int(trainer.optimizer.iterations) == 7 * epochs
        seen = trainer.seen.numpy()
        assert (seen[n * epochs:] == -1).all()
        return seen[:n * epochs].reshape(epochs, n)

    first = order(seed=3)
    for epoch in first:
        assert sorted(epoch) == list(range(n))
    assert len({tuple(epoch) for epoch in first}) == epochs  # a new order every epoch
    np.testing.assert_array_equal(order(seed=3), first)  # reproducible from the seed
    assert not np.array_equal(order(seed=4), first)


def test_validation_data_split_and_from_compiled():
    x, y = data(80)
    model = dense()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=SCE, metrics=["accuracy"])
    trainer = Trainer.from_compiled(model, jit_compile=False)
    history = trainer.fit(x, y, batch_size=16, epochs=2, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(20)
    history = trainer.fit(ds, epochs=1, validation_data=ds, verbose=0)
    np.testing.assert_allclose(history.history["val_loss"][0], trainer.evaluate(ds, verbose=0)[0],
                               rtol=1e-5)


def test_custom_objective_by_overriding_compute_loss():
    class LabelSmoothing(Trainer):
        def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
            targets = tf.one_hot(tf.cast(y, tf.int32), 3) * 0.9 + 0.1 / 3
            return tf.reduce_mean(keras.losses.categorical_crossentropy(targets, y_pred,
                                                                        from_logits=True))

    x, y = data()
    model = dense()
    LabelSmoothing(model, keras.optimizers.SGD(0.1), SCE, jit_compile=False).fit(
        x, y, batch_size=16, verbose=0)
    # The minimum of the smoothed loss is above zero: logits stay bounded.
    logits = model.predict(x, verbose=0)
    assert np.isfinite(logits).all()


def nan_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    # A log of a possibly negative value: NaN loss for some batches.
    hidden = keras.layers.Dense(1, kernel_initializer="ones")(inputs)
    out = keras.layers.Lambda(lambda t: tf.math.log(t))(hidden)
    return keras.Model(inputs, out)


@pytest.mark.parametrize("policy, jit_compile, steps_per_execution", [
    ("stop", False, 1), ("skip", False, 1), ("raise", False, 1),
    # Under XLA the update sits behind an optimization barrier (test_trainer_xla.py).
    ("stop", True, 2), ("skip", True, 2),
])
def test_nan_policy(policy, jit_compile, steps_per_execution):
    x = np.ones((32, 6), "float32")
    x[8:16] = -1.0  # batch 1 gives log(-6) = NaN
    y = np.zeros((32, 1), "float32")
    model = nan_model()
    trainer = Trainer(model, keras.optimizers.SGD(0.01), "mse", jit_compile=jit_compile,
                      shuffle=False, on_nan=policy, steps_per_execution=steps_per_execution)
    if policy == "raise":
        with pytest.raises(NonFiniteLossError, match=r"Non-finite loss in epoch 1 \(batch 2 of this fit\)"):
            trainer.fit(x, y, batch_size=8, epochs=2, verbose=0)
        assert int(model.optimizer.iterations) == 1
        return
    history = trainer.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    if policy == "stop":
        assert len(history.history["loss"]) == 1 and int(model.optimizer.iterations) == 1
    else:
        assert trainer.skipped_steps == 2 and int(model.optimizer.iterations) == 6
        assert np.isfinite(history.history["loss"]).all()


def test_invalid_constructor_arguments():
    model = dense()
    with pytest.raises(ValueError, match="on_nan.*Received: on_nan='ignore'"):
        Trainer(model, "sgd", "mse", on_nan="ignore")
    with pytest.raises(ValueError, match="Received: steps_per_execution=0"):
        Trainer(model, "sgd", "mse", steps_per_execution=0)
    with pytest.raises(ValueError, match="Received: gradient_accumulation_steps=-1"):
        Trainer(model, "sgd", "mse", gradient_accumulation_steps=-1)
    with pytest.raises(TypeError, match="Received: model="):
        Trainer("model", "sgd", "mse")
    with pytest.raises(ValueError, match="optimizer.gradient_accumulation_steps=2"):
        Trainer(model, keras.optimizers.SGD(gradient_accumulation_steps=2), "mse")
    with pytest.raises(ValueError, match="not compiled"):
        Trainer.from_compiled(dense())


def test_gradient_transforms_match_keras_global_clipnorm_and_gate_skips():
    from keras_trainkit.optimizers.transforms import ClipByGlobalNorm, SkipNonFinite

    x, y = data()
    reference = dense()
    reference.compile(optimizer=keras.optimizers.SGD(0.5, global_clipnorm=0.1), loss=SCE)
    reference.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    model = dense()
    clip = ClipByGlobalNorm(0.1)
    Trainer(model, keras.optimizers.SGD(0.5), SCE, jit_compile=False, shuffle=False,
            gradient_transforms=[clip]).fit(x, y, batch_size=16, epochs=2, verbose=0)
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert float(clip.statistics["grad_norm"]) > 0.1

    # A gradient that is Inf while the loss is finite: SkipNonFinite's gate vetoes the update.
    class InfGrad(keras.layers.Layer):
        def call(self, t):
            @tf.custom_gradient
            def ident(v):
                return v, lambda dy: dy * np.inf
            return ident(t)

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    net = keras.Model(inputs, InfGrad()(keras.layers.Dense(3)(inputs)))
    before = [w.copy() for w in net.get_weights()]
    skip = SkipNonFinite()
    Trainer(net, keras.optimizers.Adam(0.1), SCE, jit_compile=False,
            gradient_transforms=skip).fit(x, y, batch_size=32, verbose=0)
    assert int(net.optimizer.iterations) == 0
    for a, b in zip(before, net.get_weights()):
        np.testing.assert_array_equal(a, b)
