import math

import keras
import pytest

from keras_trainkit.utils import validation as v


def test_message_shape():
    with pytest.raises(ValueError) as info:
        v.check_non_negative("learning_rate", -1.0)
    assert str(info.value) == "Argument `learning_rate` must be >= 0. Received: learning_rate=-1.0"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_rejected(value):
    with pytest.raises(ValueError, match="must be finite"):
        v.check_number("x", value)


@pytest.mark.parametrize("value", ["1", None, True, [1]])
def test_wrong_type_is_type_error(value):
    with pytest.raises(TypeError, match="Received: x="):
        v.check_number("x", value)


def test_bounds_and_inclusivity():
    assert v.check_probability("beta_1", 0.0) == 0.0
    with pytest.raises(ValueError, match="must be < 1.0"):
        v.check_probability("beta_1", 1.0)
    assert v.check_probability("p", 1.0, include_one=True) == 1.0
    with pytest.raises(ValueError, match="must be > 0"):
        v.check_positive("rho", 0)
    with pytest.raises(TypeError, match="must be an integer"):
        v.check_positive("sync_period", 1.5, integer=True)
    assert v.check_positive("sync_period", 2, integer=True) == 2


def test_hint_is_appended():
    with pytest.raises(ValueError, match=r"Received: k=0\. Use k >= 1"):
        v.check_positive("k", 0, hint="Use k >= 1")


def test_check_in_and_condition_and_type():
    assert v.check_in("mode", "min", ["min", "max"]) == "min"
    with pytest.raises(ValueError, match="must be one of 'min', 'max'. Received: mode='avg'"):
        v.check_in("mode", "avg", ["min", "max"])
    with pytest.raises(ValueError, match="must be one of"):
        v.check_in("mode", [], ["min"])
    with pytest.raises(ValueError, match="must be below `b`. Received: a=3"):
        v.check_condition("a", 3, False, "must be below `b`")
    with pytest.raises(TypeError, match="must be of type int or float, not str"):
        v.check_type("n", "3", (int, float))


def test_learning_rate_accepts_schedules_and_variables():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    assert v.check_learning_rate("learning_rate", schedule) is schedule
    assert v.check_learning_rate("learning_rate", 0.1) == 0.1
    with pytest.raises(ValueError, match="Received: learning_rate=-0.1"):
        v.check_learning_rate("learning_rate", -0.1)
