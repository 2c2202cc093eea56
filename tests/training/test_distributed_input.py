"""A dataset already distributed over the replicas (``strategy.experimental_distribute_dataset``,
the custom-loop idiom of TensorFlow's guides) gives ``fit``, ``evaluate``, ``predict`` and
validation exactly what the same dataset undistributed gives on two replicas. Before,
``fit`` failed inside with "'numpy.int64' object is not callable" (a distributed dataset's
``cardinality`` is a property) and ``evaluate`` with "'DistributedDataset' object has no
attribute 'take'"."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.optimizers import ScheduleFree
from keras_trainkit.training import Trainer

X = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
Y = (X @ np.array([[1.0], [-2.0], [0.5], [3.0]], dtype="float32") + 0.25).astype("float32")


def _batches(repeat=False):
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(4)  # 4 batches of 2 per replica
    return dataset.repeat() if repeat else dataset


def _trainer(strategy, make_optimizer=None, batch_norm=False):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        optimizer = make_optimizer() if make_optimizer else keras.optimizers.SGD(0.05)
        layers = [keras.Input((4,)), keras.layers.Dense(3)]
        layers += [keras.layers.BatchNormalization()] if batch_norm else []
        model = keras.Sequential(layers + [keras.layers.Dense(1)])
        return Trainer(model, optimizer, "mse", jit_compile=False,
                       strategy=strategy, shuffle=False)


def _run(strategy, distribute):
    """Train 3 epochs with validation, then evaluate and predict; every result."""
    data = (lambda d: strategy.experimental_distribute_dataset(d)) if distribute else (lambda d: d)
    trainer = _trainer(strategy)
    history = trainer.fit(data(_batches()), epochs=3, validation_data=data(_batches()), verbose=0)
    return (history.history, trainer.model.get_weights(), trainer.evaluate(data(_batches()), verbose=0),
            trainer.predict(data(_batches())))


def test_a_distributed_dataset_trains_as_the_dataset_it_came_from(two_cpu_strategy):
    history, weights, evaluated, predicted = _run(two_cpu_strategy, distribute=True)
    expected_history, expected_weights, expected_evaluated, expected_predicted = _run(
        two_cpu_strategy, distribute=False)
    assert history.keys() == {"loss", "val_loss"}
    np.testing.assert_allclose(history["loss"], expected_history["loss"], rtol=1e-6)
    np.testing.assert_allclose(history["val_loss"], expected_history["val_loss"], rtol=1e-6)
    assert history["loss"][-1] < history["loss"][0]  # it trained
    for weight, expected in zip(weights, expected_weights):
        np.testing.assert_allclose(weight, expected, rtol=1e-6)
    assert evaluated == pytest.approx(expected_evaluated, rel=1e-6)
    assert evaluated == pytest.approx(history["val_loss"][-1], rel=1e-6)
    assert predicted.shape == (16, 1)
    np.testing.assert_allclose(predicted, expected_predicted, rtol=1e-6)


@pytest.mark.timeout(300)  # a regression would loop forever: fail it instead
def test_an_infinite_distributed_dataset_needs_steps_per_epoch(two_cpu_strategy):
    trainer = _trainer(two_cpu_strategy)
    infinite = two_cpu_strategy.experimental_distribute_dataset(_batches(repeat=True))
    with pytest.raises(ValueError, match="Argument `x` is an infinite.*Received: steps_per_epoch=None"):
        trainer.fit(infinite, epochs=1, verbose=0)
    history = trainer.fit(infinite, epochs=2, steps_per_epoch=3, verbose=0)
    assert len(history.history["loss"]) == 2
    with pytest.raises(ValueError, match="Argument `x` is an infinite.*Received: steps=None"):
        trainer.evaluate(infinite, verbose=0)


def test_evaluation_weights_with_batch_norm_need_the_undistributed_dataset(two_cpu_strategy):
    """ScheduleFree's evaluation weights get BatchNorm statistics recomputed from the training
    batches, which a distributed dataset holds per replica: refused before any step."""
    trainer = _trainer(two_cpu_strategy, lambda: ScheduleFree(keras.optimizers.SGD(0.05)),
                       batch_norm=True)
    distributed = two_cpu_strategy.experimental_distribute_dataset(_batches())
    with pytest.raises(ValueError, match="Argument `x` must be a tf.data.Dataset that the Trainer "
                                         "distributes itself.*Received: x of type DistributedDataset"):
        trainer.fit(distributed, epochs=1, verbose=0)
    assert int(trainer.optimizer.iterations.numpy()) == 0
    assert trainer.fit(_batches(), epochs=1, verbose=0).history["loss"]
