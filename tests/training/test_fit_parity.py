"""Corners where the Trainer must do what ``model.fit`` / ``model.evaluate`` do, checked
against Keras itself on the same model, data and seed."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.training import Trainer


def regression(seed=0, d=4, outputs=1):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(outputs)])


class SeenBatches(keras.callbacks.Callback):
    """Records each epoch's batch count and end-of-epoch log keys."""

    def on_train_begin(self, logs=None):
        self.batches, self.keys = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.batches[-1] += 1

    def on_epoch_end(self, epoch, logs=None):
        self.keys.append(sorted(logs))


class SeenValidation(keras.callbacks.Callback):
    def on_test_begin(self, logs=None):
        self.model.validation_batches = 0

    def on_test_batch_end(self, batch, logs=None):
        self.model.validation_batches += 1


@pytest.mark.parametrize("fraction", [0.05, 0.25, 0.3, 0.5])
def test_validation_split_cuts_where_fit_cuts(fraction):
    # Keras trains on the first floor(n * (1 - fraction)) examples (10 * 0.75 -> 7, not 8).
    x = np.arange(40, dtype="float32").reshape(10, 4)
    y = np.ones((10, 1), "float32")
    counted = {}
    for runner in ("fit", "trainer"):
        model = regression()
        seen, validation = SeenBatches(), SeenValidation()
        if runner == "fit":
            model.compile("sgd", "mse")
            model.fit(x, y, batch_size=1, epochs=1, validation_split=fraction, shuffle=False, verbose=0,
                      callbacks=[seen, validation])
        else:
            Trainer(model, "sgd", "mse", jit_compile=False, shuffle=False).fit(
                x, y, batch_size=1, epochs=1, validation_split=fraction, verbose=0, callbacks=[seen, validation])
        counted[runner] = (seen.batches, model.validation_batches)
    assert counted["trainer"] == counted["fit"]
    assert counted["fit"][0][0] + counted["fit"][1] == 10


def test_validation_runs_in_an_epoch_a_callback_stopped():
    class StopAtSecondBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
    keys = {}
    for runner in ("fit", "trainer"):
        model, seen = regression(), SeenBatches()
        arguments = dict(batch_size=16, epochs=3, validation_data=(x[:16], y[:16]), verbose=0,
                         callbacks=[StopAtSecondBatch(), seen])
        if runner == "fit":
            model.compile("sgd", "mse")
            history = model.fit(x, y, **arguments)
        else:
            history = Trainer(model, "sgd", "mse", jit_compile=False).fit(x, y, **arguments)
        keys[runner] = (seen.batches, seen.keys, sorted(history.history))
    assert keys["trainer"] == keys["fit"] == ([2], [["loss", "val_loss"]], ["loss", "val_loss"])


def test_evaluate_lists_multi_output_results_in_evaluate_order():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = {"a": rng.normal(size=(32, 1)).astype("float32"), "b": rng.integers(0, 2, size=(32, 1))}
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(inputs),
                                 "b": keras.layers.Dense(1, activation="sigmoid", name="b")(inputs)})
    trainer = Trainer(model, "sgd", {"a": "mse", "b": "binary_crossentropy"},
                      {"a": ["mae"], "b": ["accuracy"]}, jit_compile=False)
    ours = trainer.evaluate(x, y, batch_size=8, verbose=0)
    as_dict = trainer.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    keras_list = model.evaluate(x, y, batch_size=8, verbose=0)
    assert len(ours) == len(keras_list) == len(as_dict) == 5
    np.testing.assert_allclose(ours, keras_list, rtol=1e-5)
    # Not the dictionary's own order, which puts the metrics before the per-output losses.
    assert not np.allclose(ours, list(as_dict.values()), rtol=1e-5)


def test_sample_weight_beside_a_dataset_is_refused_as_fit_refuses_it():
    x, y = np.ones((8, 4), "float32"), np.ones((8, 1), "float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    model = regression()
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(dataset, sample_weight=np.zeros(8), verbose=0)
    weights = [w.copy() for w in model.get_weights()]
    trainer = Trainer(model, "sgd", "mse", jit_compile=False)
    with pytest.raises(ValueError, match="Argument `sample_weight` must be None when `x` is a tf.data.Dataset"):
        trainer.fit(dataset, sample_weight=np.zeros(8), verbose=0)
    with pytest.raises(ValueError, match="Argument `sample_weight` must be None when `x` is a tf.data.Dataset"):
        trainer.evaluate(dataset, sample_weight=np.zeros(8), verbose=0)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)


class Interrupt(Exception):
    pass


class InterruptAt(keras.callbacks.Callback):
    """Raises at the end of the given batch of the given epoch (before that step's checkpoint)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise Interrupt


def _steps_data(kind):
    x = np.linspace(-1, 1, 128, dtype="float32").reshape(32, 4)
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")).astype("float32")
    if kind == "arrays":
        return dict(x=x, y=y, batch_size=8)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # 4 batches
    if kind == "unknown_length":
        dataset = dataset.filter(lambda a, b: True)
    return dict(x=dataset)


def _fit_with_steps(runner, kind, steps_per_epoch, epochs, tmp_path=None, callbacks=()):
    model, seen = regression(), SeenBatches()
    arguments = dict(_steps_data(kind), epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0,
                     callbacks=[seen, *callbacks])
    if runner == "fit":
        model.compile(keras.optimizers.SGD(0.01), "mse")
        model.fit(shuffle=False, **arguments)
    else:
        trainer = Trainer(model, keras.optimizers.SGD(0.01), "mse", jit_compile=False, shuffle=False)
        trainer.fit(checkpoint_dir=tmp_path, checkpoint_every_n_steps=1 if tmp_path else None, **arguments)
    return seen.batches, model.get_weights()


@pytest.mark.parametrize("kind", ["dataset", "arrays", "unknown_length"])
@pytest.mark.parametrize("steps_per_epoch", [2, 3, 5])
def test_steps_per_epoch_draws_the_batches_fit_draws(kind, steps_per_epoch, tmp_path):
    # Keras: one iterator runs on across epochs; a pass with fewer batches left than
    # steps_per_epoch ends the epoch early, and the next epoch starts a new pass.
    expected_batches, expected_weights = _fit_with_steps("fit", kind, steps_per_epoch, epochs=4)
    runs = {"in memory": None}
    if kind != "unknown_length":  # the checkpointed runs must see the same batches
        runs["checkpointed"] = tmp_path / "ckpt"
    for name, folder in runs.items():
        batches, weights = _fit_with_steps("trainer", kind, steps_per_epoch, epochs=4, tmp_path=folder)
        assert batches == expected_batches, name
        for ours, theirs in zip(weights, expected_weights):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=name)
    assert sum(expected_batches) < 4 * steps_per_epoch or steps_per_epoch == 2


@pytest.mark.parametrize("kind", ["dataset", "arrays"])
def test_a_run_with_steps_per_epoch_resumes_mid_pass(kind, tmp_path):
    # 4 batches a pass, 3 steps an epoch: epochs of 3, 1, 3, 1 steps. Interrupted in the
    # third epoch (the second pass) at its second step, after the checkpoint of its first
    # (written after each step's callbacks), then run again to the end.
    expected_batches, expected_weights = _fit_with_steps("fit", kind, 3, epochs=4)
    assert expected_batches == [3, 1, 3, 1]
    folder = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        _fit_with_steps("trainer", kind, 3, epochs=4, tmp_path=folder, callbacks=[InterruptAt(2, 1)])
    batches, weights = _fit_with_steps("trainer", kind, 3, epochs=4, tmp_path=folder)
    assert batches == [2, 1]  # the rest of epoch 3, then epoch 4
    for ours, theirs in zip(weights, expected_weights):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


class OverrideLearningRateMidEpoch(keras.callbacks.Callback):
    """From the third step on, the learning rate is 0 in place of the schedule (a retrace asked for mid-epoch)."""

    def on_train_batch_end(self, batch, logs=None):
        from keras_trainkit.optimizers import control

        if batch == 1 and control.LearningRateHandle(self.model.optimizer).begin_override(0.0):
            control.retrace(self.model)


class EpochKernels(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.kernels = []

    def on_epoch_end(self, epoch, logs=None):
        self.kernels.append(keras.ops.convert_to_numpy(self.model.layers[0].kernel).copy())


@pytest.mark.parametrize("when", ["epoch_begin", "mid_epoch"])
def test_a_retrace_asked_for_during_fit_takes_effect_at_the_next_step(when):
    # model.fit calls model.train_function afresh at every step: a schedule replaced during fit
    # (SWA's learning rate from its start epoch; here a learning rate of 0) is used from the next step.
    from keras_trainkit.callbacks import SWA

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    kernels = {}
    for runner in ("fit", "trainer"):
        model = regression(seed=1)
        model.compile(keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 4, 0.5)), "mse")
        seen = EpochKernels()
        override = (SWA(start_epoch=1, swa_learning_rate=0.0, anneal_epochs=0) if when == "epoch_begin"
                    else OverrideLearningRateMidEpoch())
        callbacks = [seen, override]
        if runner == "fit":
            model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=callbacks)
        else:
            Trainer.from_compiled(model, shuffle=False).fit(x, y, batch_size=8, epochs=3, verbose=0,
                                                           callbacks=callbacks)
        kernels[runner] = seen.kernels
    frozen_from = 0 if when == "mid_epoch" else 1  # the epoch from whose end on the weights stay
    for runner, trained in kernels.items():
        for later in trained[frozen_from + 1:]:
            np.testing.assert_array_equal(later, trained[frozen_from], err_msg=runner)
    np.testing.assert_allclose(kernels["trainer"][frozen_from], kernels["fit"][frozen_from], rtol=1e-6)


class ValidationBatchIndices(keras.callbacks.Callback):
    """The batch indices of each validation."""

    def on_train_begin(self, logs=None):
        self.indices = []

    def on_test_begin(self, logs=None):
        self.indices.append([])

    def on_test_batch_begin(self, batch, logs=None):
        self.indices[-1].append(batch)


@pytest.mark.parametrize("validation", ["data", "split"])
def test_validation_batch_size_batches_validation_as_fit_does(validation):
    x = np.random.default_rng(0).normal(size=(20, 4)).astype("float32")
    y = np.ones((20, 1), "float32")
    arguments = dict(batch_size=5, epochs=2, validation_batch_size=3, verbose=0)
    if validation == "data":
        arguments["validation_data"] = (x[:10], y[:10])
    else:
        arguments["validation_split"] = 0.5
    seen = {}
    for runner in ("fit", "trainer"):
        model = regression()
        callback = ValidationBatchIndices()
        if runner == "fit":
            model.compile("sgd", "mse")
            history = model.fit(x, y, callbacks=[callback], shuffle=False, **arguments)
        else:
            history = Trainer(model, "sgd", "mse", jit_compile=False, shuffle=False).fit(
                x, y, callbacks=[callback], **arguments)
        seen[runner] = (callback.indices, history.history["val_loss"])
    assert seen["trainer"][0] == seen["fit"][0] == [[0, 1, 2, 3]] * 2  # ceil(10 / 3) batches, not 2
    np.testing.assert_allclose(seen["trainer"][1], seen["fit"][1], rtol=1e-5)


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "8"])
def test_validation_batch_size_is_checked_before_training(value):
    model = regression()
    x, y = np.ones((8, 4), "float32"), np.ones((8, 1), "float32")
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises((ValueError, TypeError), match="Argument `validation_batch_size`"):
        Trainer(model, "sgd", "mse", jit_compile=False).fit(x, y, validation_data=(x, y),
                                                             validation_batch_size=value, verbose=0)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_validation_batch_size_with_a_validation_dataset_is_refused():
    # model.fit ignores it without a word; the batches are the dataset's own.
    x, y = np.ones((8, 4), "float32"), np.ones((8, 1), "float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    with pytest.raises(ValueError, match=r"validation_batch_size=4"):
        Trainer(regression(), "sgd", "mse", jit_compile=False).fit(x, y, validation_data=dataset,
                                                                   validation_batch_size=4, verbose=0)


class PredictCalls(keras.callbacks.Callback):
    def on_predict_begin(self, logs=None):
        self.calls = []

    def on_predict_batch_begin(self, batch, logs=None):
        self.calls.append([batch])

    def on_predict_batch_end(self, batch, logs=None):
        self.calls[-1] += [batch, logs["outputs"].shape[0]]


@pytest.mark.parametrize("data", ["arrays", "dataset of unknown length", "steps"])
def test_predict_runs_steps_per_execution_batches_per_call_as_model_predict(data):
    """As ``model.predict``: one call of up to k batches, its outputs concatenated for
    ``on_predict_batch_end``. Before, the Trainer ran one batch per call whatever k.
    ``model.predict`` with ``steps=4`` and k = 3 predicts 6 batches (two whole calls);
    the Trainer stops at 4, as ``model.predict`` with k = 1 does."""
    x = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
    inputs = {"x": x, "batch_size": 2}
    if data != "arrays":
        inputs = {"x": tf.data.Dataset.from_tensor_slices(x).batch(2).filter(lambda row: True)}
        inputs.update({"steps": 4} if data == "steps" else {})
    runs = {}
    for runner, k in (("predict", 1), ("predict", 3), ("trainer", 3)):
        model = regression(outputs=2)
        callback = PredictCalls()
        if runner == "predict":
            model.compile("sgd", "mse", steps_per_execution=k)
            outputs = model.predict(verbose=0, callbacks=[callback], **inputs)
        else:
            trainer = Trainer(model, "sgd", "mse", jit_compile=False, steps_per_execution=k)
            outputs = trainer.predict(callbacks=[callback], **inputs)
        # (first batch, batches' rows) of each call that ran (Keras begins one more call
        # on data of unknown length, which finds nothing)
        runs[runner, k] = (outputs, [(c[0], c[2]) for c in callback.calls if len(c) == 3],
                           [c[1] for c in callback.calls if len(c) == 3])
    outputs, calls, ends = runs["trainer", 3]
    np.testing.assert_allclose(outputs, runs["predict", 1][0], rtol=1e-6)
    assert calls == ([(0, 6), (3, 2)] if data == "steps" else [(0, 6), (3, 4)])
    if data != "steps":
        assert calls == runs["predict", 3][1]
    # The index a call reports is the last batch it ran (model.predict reports its start
    # plus k - 1, 5 for a last call of batches 3 and 4: the documented difference).
    assert ends == [2, 3 if data == "steps" else 4]
