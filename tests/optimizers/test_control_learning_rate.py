"""``HeldLearningRate``: what a ``LearningRateHandle`` puts in a schedule's place while it
holds the rate (SWA's annealing, the LR finder), saved as that schedule."""

import json

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers.control import HeldLearningRate, LearningRateHandle

COSINE = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=100)


def test_held_rate_is_the_variable_and_saves_as_its_schedule():
    assert float(HeldLearningRate(COSINE, keras.ops.convert_to_tensor(0.75))(3)) == 0.75
    held = HeldLearningRate(COSINE, np.float32(0.25))  # a NumPy scalar is a number
    assert float(held(0)) == float(held(50)) == 0.25
    held.variable.assign(0.5)
    assert float(held(7)) == 0.5
    saved = json.loads(json.dumps(keras.saving.serialize_keras_object(held)))
    loaded = keras.saving.deserialize_keras_object(saved)
    assert type(loaded) is keras.optimizers.schedules.CosineDecay
    assert loaded.get_config() == COSINE.get_config()


@pytest.mark.parametrize("schedule, value, error, match", [
    (0.1, 0.01, TypeError, "schedule=0.1"),
    (COSINE, -0.01, ValueError, "value=-0.01"),
    (COSINE, float("nan"), ValueError, "value=nan"),
    (COSINE, "0.01", TypeError, "value='0.01'"),
    (COSINE, np.array([0.1, 0.2]), TypeError, "value="),
])
def test_bad_arguments_are_refused(schedule, value, error, match):
    with pytest.raises(error, match=match):
        HeldLearningRate(schedule, value)


def test_a_handle_holds_a_schedule_and_puts_it_back():
    optimizer = keras.optimizers.SGD(COSINE)
    handle = LearningRateHandle(optimizer)
    assert handle.begin_override(0.02) is True  # a schedule is replaced: retrace
    assert handle.held and isinstance(handle.raw, HeldLearningRate)
    assert float(optimizer.learning_rate) == pytest.approx(0.02)
    assert handle.end_override() is True
    assert handle.raw is COSINE and not handle.held
