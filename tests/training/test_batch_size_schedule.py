"""BatchSizeSchedule: its values, its argument checks, and the Trainer applying it between epochs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.training import BatchSizeSchedule, Trainer


def test_geometric_values_follow_the_formula():
    schedule = BatchSizeSchedule(initial=8, factor=2, every=3, maximum=40)
    expected = [min(40, 8 * 2 ** (e // 3)) for e in range(12)]  # written out independently
    assert [schedule(e) for e in range(12)] == expected == [8, 8, 8, 16, 16, 16, 32, 32, 32, 40, 40, 40]
    assert [BatchSizeSchedule(initial=10, factor=1.5, every=1)(e) for e in range(3)] == [10, 15, 22]
    assert BatchSizeSchedule(initial=5)(100) == 5


def test_boundaries_values():
    schedule = BatchSizeSchedule(initial=4, boundaries={5: 64, 2: 16})
    assert [schedule(e) for e in range(7)] == [4, 4, 16, 16, 16, 64, 64]


def test_config_round_trip_and_keras_serialization():
    for schedule in (BatchSizeSchedule(initial=8, factor=3, every=2, maximum=100),
                     BatchSizeSchedule(initial=4, boundaries={1: 8, 3: 32})):
        again = BatchSizeSchedule.from_config(schedule.get_config())
        assert again.get_config() == schedule.get_config()
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
        assert [restored(e) for e in range(8)] == [schedule(e) for e in range(8)]
    # JSON turns integer keys into strings.
    assert BatchSizeSchedule(initial=4, boundaries={"2": 8})(2) == 8


@pytest.mark.parametrize("kwargs, name", [
    ({"initial": 0}, "initial"),
    ({"initial": -4}, "initial"),
    ({"factor": 0.5}, "factor"),
    ({"every": 0}, "every"),
    ({"initial": 64, "maximum": 32}, "maximum"),
    ({"boundaries": {-1: 8}}, "boundaries"),
    ({"boundaries": {1: 0}}, "boundaries"),
    ({"every": 2, "boundaries": {1: 8}}, "boundaries"),
    ({"maximum": 64, "boundaries": {1: 128}}, "boundaries"),
    ({"factor": float("nan")}, "factor"),
])
def test_bad_arguments_raise_value_error(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        BatchSizeSchedule(**kwargs)


@pytest.mark.parametrize("kwargs, name", [
    ({"initial": 2.5}, "initial"),
    ({"initial": "32"}, "initial"),
    ({"boundaries": [(1, 8)]}, "boundaries"),
    ({"boundaries": {1: 8.5}}, "boundaries"),
])
def test_bad_types_raise_type_error(kwargs, name):
    with pytest.raises(TypeError, match=f"Received: {name}="):
        BatchSizeSchedule(**kwargs)


def test_overflow_without_maximum_is_a_clear_error():
    with pytest.raises(ValueError, match="maximum"):
        BatchSizeSchedule(initial=2, factor=2, every=1)(5000)


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps, self.params_steps = {}, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.steps[epoch] = 0
        self.params_steps[epoch] = self.params["steps"]

    def on_train_batch_end(self, batch, logs=None):
        self.steps[self.epoch] += 1


def make():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    return Trainer(model, keras.optimizers.SGD(0.01), "mse", jit_compile=False, seed=0)


def test_trainer_applies_the_schedule_between_epochs():
    x = np.random.default_rng(0).normal(size=(48, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    schedule = BatchSizeSchedule(initial=4, factor=2, every=2, maximum=24)
    recorder = Recorder()
    history = make().fit(x, y, batch_size=schedule, epochs=7, verbose=0, callbacks=[recorder],
                         validation_data=(x[:8], y[:8]))
    sizes = [4, 4, 8, 8, 16, 16, 24]
    expected = [int(np.ceil(48 / s)) for s in sizes]  # 12, 12, 6, 6, 3, 3, 2
    assert [recorder.steps[e] for e in range(7)] == expected
    assert [recorder.params_steps[e] for e in range(7)] == expected
    assert len(history.history["val_loss"]) == 7 and np.all(np.isfinite(history.history["loss"]))


def test_schedule_starts_at_initial_epoch_and_uses_boundaries():
    x = np.zeros((20, 3), "float32")
    y = np.zeros((20, 1), "float32")
    recorder = Recorder()
    make().fit(x, y, batch_size=BatchSizeSchedule(initial=2, boundaries={3: 5, 4: 10}),
               epochs=5, initial_epoch=2, verbose=0, callbacks=[recorder])
    assert recorder.steps == {2: 10, 3: 4, 4: 2}


def test_schedule_with_a_dataset_is_refused():
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((8, 3), "float32"),
                                                  np.zeros((8, 1), "float32"))).batch(4)
    with pytest.raises(ValueError, match="BatchSizeSchedule"):
        make().fit(dataset, batch_size=BatchSizeSchedule(initial=4), verbose=0)
