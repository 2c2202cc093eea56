"""The skip contract on every path that runs a gradient-transform chain.

``[<skip>, GradientNoise(0.0, seed=1), AutoClip(50.0, history_size=4)]`` gets one
ordinary gradient and then one to skip (the loss stays finite), for each skipping
transform: ``SkipNonFinite(max_consecutive=None)`` with a NaN gradient, and
``SkipLargeUpdates(threshold=3.0, warmup_steps=1)`` with a gradient 1e6 times too
large (its relative rule: the first step sets the running mean). On the
skipped step the weights, the optimizer slots, the step counter and the state of the
later transforms stay unchanged: ``GradientNoise.step == 1`` and ``AutoClip.count == 1``
(a 0.0 or NaN norm must not enter AutoClip's percentile window). Paths: the Trainer's
``apply_gradients`` eagerly, in a ``tf.function`` and under XLA; ``Trainer.fit`` eager,
compiled and XLA; ``TransformedOptimizer`` in ``model.fit`` (with and without XLA);
transforms attached by a callback in ``model.fit``; and both under ``MirroredStrategy``.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.optimizers import (
    AutoClip,
    GradientNoise,
    SkipLargeUpdates,
    SkipNonFinite,
    TransformedOptimizer,
    control,
)
from keras_trainkit.training import Trainer
from tests.conftest import mirrored_two_cpus
from tests.optimizers.skip_contract_checks import BatchRecorder, as_int, assert_skip_contract

BATCH = 8


# The factor the gradient of the step to skip is multiplied by, per skipping transform.
BAD_GRADIENT = {"non_finite": np.nan, "large": 1e6}


@pytest.fixture(params=sorted(BAD_GRADIENT))
def kind(request):
    return request.param


def _skip(kind):
    if kind == "non_finite":
        return SkipNonFinite(max_consecutive=None)
    return SkipLargeUpdates(threshold=3.0, warmup_steps=1, max_consecutive=None)


def _chain(kind):
    return [_skip(kind), GradientNoise(0.0, seed=1), AutoClip(50.0, history_size=4)]


class _BadGradWhenFlagged(keras.layers.Layer):
    """Identity on ``h``; its gradient is times ``factor`` for a batch whose ``x[:, 3]`` holds a flag (> 100)."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, h, x):
        flagged = tf.reduce_max(x[:, 3]) > 100.0

        @tf.custom_gradient
        def ident(v):
            return v, lambda dy: dy * tf.where(flagged, self.factor, 1.0)

        return ident(h)


def _data():
    """Two batches: the first finite, the second with NaN gradients and a finite loss."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * BATCH, 4)).astype("float32")
    y = rng.normal(size=(2 * BATCH, 1)).astype("float32")
    x[BATCH, 3] = 1000.0
    return x, y


def _model(kind):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation="tanh")(inputs)
    return keras.Model(inputs, _BadGradWhenFlagged(BAD_GRADIENT[kind])(keras.layers.Dense(1)(hidden), inputs))


def _sgd():
    return keras.optimizers.SGD(0.1, momentum=0.9)


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_trainer_apply_gradients(mode, kind):
    model = _model(kind)
    chain = _chain(kind)
    trainer = Trainer(model, _sgd(), "mse", jit_compile=False, gradient_transforms=chain)
    variables = model.trainable_variables
    trainer.optimizer.build(variables)
    for transform in chain:
        transform.build(variables)
    def apply(grads):  # the variables are closed over, as in a training step
        trainer.apply_gradients(grads, variables)

    if mode != "eager":
        apply = tf.function(apply, jit_compile=mode == "xla")
    recorder = BatchRecorder()
    recorder.set_model(model)
    finite = [tf.ones_like(v) for v in variables]
    apply(finite)
    recorder.on_train_batch_end(0)
    apply([g * BAD_GRADIENT[kind] for g in finite])
    recorder.on_train_batch_end(1)
    assert_skip_contract(chain, recorder, trainer.optimizer)
    assert as_int(chain[0].skipped_steps) == 1


@pytest.mark.parametrize("mode", ["eager", "compiled", "xla"])
def test_trainer_fit(mode, kind):
    x, y = _data()
    model = _model(kind)
    chain = _chain(kind)
    trainer = Trainer(model, _sgd(), "mse", jit_compile=mode == "xla", run_eagerly=mode == "eager",
                      shuffle=False, gradient_transforms=chain, on_nan="skip")
    recorder = BatchRecorder()
    trainer.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[recorder])
    assert_skip_contract(chain, recorder, trainer.optimizer)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_transformed_optimizer_in_model_fit(jit_compile, kind):
    x, y = _data()
    model = _model(kind)
    chain = _chain(kind)
    model.compile(TransformedOptimizer(_sgd(), chain), "mse", jit_compile=jit_compile)
    recorder = BatchRecorder()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
    assert_skip_contract(chain, recorder, model.optimizer)
    assert as_int(chain[0].skipped_steps) == 1


class _AttachChain(keras.callbacks.Callback):
    """Attaches the chain to the compiled optimizer for one fit, as GradientClipping does."""

    def __init__(self, chain):
        super().__init__()
        self.chain = chain

    def on_train_begin(self, logs=None):
        control.attach_transforms(self.model, self, self.chain)

    def on_train_end(self, logs=None):
        control.detach_transforms(self.model, self)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_transforms_attached_by_a_callback_in_model_fit(jit_compile, kind):
    x, y = _data()
    model = _model(kind)
    chain = _chain(kind)
    optimizer = _sgd()
    model.compile(optimizer, "mse", jit_compile=jit_compile)
    recorder = BatchRecorder()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[_AttachChain(chain), recorder])
    assert model.optimizer is optimizer  # detached at the end of fit
    assert_skip_contract(chain, recorder, optimizer)
    assert as_int(chain[0].skipped_steps) == 1


def test_a_compiled_skip_guards_transforms_attached_by_callbacks(kind):
    """Attached transforms join the compiled TransformedOptimizer's one chain, after its skip."""
    x, y = _data()
    model = _model(kind)
    skip, noise, clip = _chain(kind)
    model.compile(TransformedOptimizer(_sgd(), [skip]), "mse")
    recorder = BatchRecorder()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[_AttachChain([noise, clip]), recorder])
    assert_skip_contract([skip, noise, clip], recorder, model.optimizer)


def test_the_gradient_clipping_callback_runs_after_a_compiled_skip(kind):
    """``GradientClipping("autoclip")`` joins the compiled chain after the skip: its window skips the step too."""
    from keras_trainkit.callbacks import GradientClipping

    x, y = _data()
    model = _model(kind)
    skip = _skip(kind)
    model.compile(TransformedOptimizer(_sgd(), [skip]), "mse")
    clipping = GradientClipping("autoclip", percentile=50.0, history_size=4)
    recorder = BatchRecorder()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[clipping, recorder])
    assert as_int(clipping.transform.count) == 1
    assert as_int(skip.skipped_steps) == 1
    assert as_int(model.optimizer.iterations) == 1
    for before, after in zip(recorder.weights[0], recorder.weights[1]):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(recorder.slots[0], recorder.slots[1]):
        np.testing.assert_array_equal(before, after)


def test_under_mirrored_strategy_in_model_fit_and_the_trainer(kind):
    x, y = _data()
    strategy = mirrored_two_cpus()
    with strategy.scope():
        model = _model(kind)
        chain = _chain(kind)
        model.compile(TransformedOptimizer(_sgd(), chain), "mse")
    recorder = BatchRecorder()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
    assert_skip_contract(chain, recorder, model.optimizer)

    with strategy.scope():
        model = _model(kind)
        chain = _chain(kind)
        trainer = Trainer(model, _sgd(), "mse", shuffle=False, strategy=strategy,
                          gradient_transforms=chain, on_nan="skip")
    recorder = BatchRecorder()
    trainer.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[recorder])
    assert_skip_contract(chain, recorder, trainer.optimizer)
