"""Schedules count optimizer updates, not micro-batches, under gradient accumulation.

A one-weight model with the "loss" ``mean(y_pred)`` and inputs of ones has
gradient 1 on every micro-batch, so the averaged gradient of an accumulation
window is 1 and each real SGD update moves the weight by exactly ``-lr``.
"""

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers._update_count import (
    UpdateCountScheduleMixin,
    update_count_learning_rate,
)

K, UPDATES = 4, 6


class CountedSGD(UpdateCountScheduleMixin, keras.optimizers.SGD):
    """SGD whose schedule sees the update count (the fix under test)."""


def _schedule():
    # A step schedule with a different value at every update: 0.1 * 0.9 ** u.
    return keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.9,
                                                       staircase=True)


def _moves(optimizer):
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")]
    )
    model.compile(optimizer=optimizer, loss=lambda y_true, y_pred: keras.ops.mean(y_pred))
    weights = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            weights.append(float(self.model.get_weights()[0][0, 0]))

    x = np.ones((2 * K * UPDATES, 1), "float32")
    model.fit(x, x, batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=[Record()])
    after_updates = np.array(weights)[K - 1::K]  # the micro-batches that apply an update
    return -np.diff(np.concatenate([[1.0], after_updates]))


def _reference(steps):
    return 0.1 * 0.9 ** np.asarray(steps, dtype=np.float64)


def test_update_u_uses_schedule_of_u_with_the_mixin():
    moves = _moves(CountedSGD(_schedule(), gradient_accumulation_steps=K))
    np.testing.assert_allclose(moves, _reference(np.arange(UPDATES)), rtol=1e-4)


def test_keras_alone_evaluates_the_schedule_at_the_micro_batch_count():
    """Documents the Keras 3.15 behaviour the mixin corrects: update u uses schedule(k u + k - 1)."""
    moves = _moves(keras.optimizers.SGD(_schedule(), gradient_accumulation_steps=K))
    np.testing.assert_allclose(moves, _reference(K * np.arange(UPDATES) + K - 1), rtol=1e-4)


@pytest.mark.parametrize("accumulation", [None, 3])
def test_learning_rate_property(accumulation):
    optimizer = CountedSGD(_schedule(), gradient_accumulation_steps=accumulation)
    optimizer.build([keras.Variable(np.zeros(1, "float32"))])
    optimizer._iterations.assign(7)
    update = 7 // accumulation if accumulation else 7
    assert float(optimizer.learning_rate) == pytest.approx(_reference(update))
    assert float(update_count_learning_rate(optimizer)) == pytest.approx(_reference(update))
    plain = CountedSGD(0.25, gradient_accumulation_steps=accumulation)
    assert float(plain.learning_rate) == pytest.approx(0.25)


def _trainkit_optimizers():
    from keras_trainkit import optimizers

    return [cls for name, cls in sorted(optimizers._registry.REGISTRY.classes.items())
            if issubclass(cls, optimizers.TrainkitOptimizer)]


@pytest.mark.parametrize("cls", _trainkit_optimizers(), ids=lambda c: c.__name__)
def test_every_trainkit_optimizer_counts_updates(cls):
    optimizer = cls(learning_rate=_schedule(), gradient_accumulation_steps=3)
    optimizer.build([keras.Variable(np.zeros(1, "float32"))])
    optimizer._iterations.assign(7)  # 7 micro-batches = 2 updates applied
    assert float(optimizer.learning_rate) == pytest.approx(_reference(2))
