"""Two replicas (``MirroredStrategy`` over two logical CPUs) against one device, with the
same global batch, where the two used to differ.

* A Keras optimizer's own clipping (``global_clipnorm``, ``clipvalue``) under the Trainer,
  and under our wrappers in ``model.fit``, clipped each replica's share ``g / 2`` of the
  summed gradient: ``g`` was clipped at twice the threshold.
* Sparse gradients (``Embedding``) in the Trainer: dividing a ``tf.IndexedSlices`` into
  shares raised a ``TypeError`` under a strategy; with a keras_trainkit optimizer the
  one-device Trainer failed too (the default replica context's all-reduce got tensors
  of two graphs).
* ``RecipeHyperModel`` under a tuner's ``distribution_strategy`` recompiled with an
  optimizer made outside the strategy's scope ("Mixing different tf.distribute.Strategy
  objects").
* A Trainer's ``fit`` inside a ``OneDeviceStrategy``'s scope failed at the first update.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_trainkit import optimizers, tuning
from keras_trainkit.training import Trainer


def _one_device():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1)) * 3 + 0.1).astype("float32")
    return x, y


def _mlp():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def _embedding_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,), dtype="int32")
    hidden = keras.layers.Flatten()(keras.layers.Embedding(10, 4)(inputs))
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def _trainer_weights(strategy, make_model, make_optimizer, x, y):
    with strategy.scope():
        model = make_model()
        trainer = Trainer(model, make_optimizer(), "mse", strategy=strategy, shuffle=False, jit_compile=False)
    trainer.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model.get_weights()


def _fit_weights(strategy, make_optimizer, x, y):
    with strategy.scope():
        model = _mlp()
        model.compile(make_optimizer(), "mse", jit_compile=False)
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=2, verbose=0)
    return model.get_weights()


def _assert_close(actual, desired):
    for a, d in zip(actual, desired):
        np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-6)


def test_a_keras_optimizers_clipping_sees_the_global_gradient(two_cpu_strategy):
    # Every step is clipped (gradient norms ~10 against 0.1): before the fix the weights
    # differed from one device's by 0.019 (global_clipnorm) and 0.02 (clipvalue).
    x, y = _data()
    for make in (lambda: keras.optimizers.SGD(0.05, global_clipnorm=0.1),
                 lambda: keras.optimizers.SGD(0.05, clipvalue=0.05)):
        _assert_close(_trainer_weights(two_cpu_strategy, _mlp, make, x, y),
                      _trainer_weights(_one_device(), _mlp, make, x, y))
    # The same inside a wrapper in model.fit (0.019 apart before the fix).
    wrapped = lambda: optimizers.TransformedOptimizer(keras.optimizers.SGD(0.05, global_clipnorm=0.1), [])  # noqa: E731
    _assert_close(_fit_weights(two_cpu_strategy, wrapped, x, y), _fit_weights(_one_device(), wrapped, x, y))


def test_sparse_gradients_in_the_trainer_on_one_and_two_replicas(two_cpu_strategy):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, size=(32, 3))
    y = rng.normal(size=(32, 1)).astype("float32")
    for make in (lambda: keras.optimizers.Adam(0.05), lambda: optimizers.AdaBelief(0.05)):
        _assert_close(_trainer_weights(two_cpu_strategy, _embedding_model, make, x, y),
                      _trainer_weights(_one_device(), _embedding_model, make, x, y))


def test_a_recipe_search_under_a_distribution_strategy(two_cpu_strategy, tmp_path):
    # Before the fix the trial failed: "Mixing different tf.distribute.Strategy objects".
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1))).astype("float32")
    recipe = tuning.RecipeHyperModel(
        (8,), num_outputs=1, loss="mse", seed=0,
        training=tuning.TrainingSpace(batch_sizes=(32,), epochs=2, label_smoothing=None),
        optimizer=tuning.OptimizerSpace(families=["adam"], fixed={"learning_rate": 1e-2}),
        schedule=tuning.ScheduleSpace(families=["constant"]))
    tuner = tuning.RandomSearch(recipe, objective="val_loss", max_trials=1, seed=0, directory=tmp_path,
                                distribution_strategy=two_cpu_strategy)
    tuner.search(x, y, validation_data=(x, y), verbose=0)
    trial = tuner.oracle.get_best_trials()[0]
    assert trial.status == "COMPLETED" and np.isfinite(trial.score), (trial.status, trial.score)
    model = tuner.get_best_models(1)[0]
    assert model.distribute_strategy is two_cpu_strategy


def test_a_fit_inside_a_one_device_strategys_scope_trains_as_outside_it():
    """Before, a Trainer's ``fit`` called inside ``OneDeviceStrategy().scope()`` (as Keras allows
    for ``model.fit``) failed at the first update: the optimizer was applied in the
    cross-replica context, where Keras's update step finds no replica context."""
    x, y = _data()
    weights = []
    for inside in (True, False):
        strategy = _one_device()
        with strategy.scope():
            model = _mlp()
            trainer = Trainer(model, keras.optimizers.Adam(0.05), "mse", strategy=strategy, shuffle=False)
            if inside:
                trainer.fit(x, y, batch_size=8, epochs=2, verbose=0)
        if not inside:
            trainer.fit(x, y, batch_size=8, epochs=2, verbose=0)
        assert int(trainer.optimizer.iterations.numpy()) == 8
        weights.append(model.get_weights())
    for left, right in zip(*weights, strict=True):
        np.testing.assert_array_equal(left, right)
