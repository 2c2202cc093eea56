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


# Issue 18, section 4: values a float32 tensor or an int64 cannot hold.
@pytest.mark.parametrize("value", [1e39, -1e300, 10**40], ids=["1e39", "-1e300", "10**40"])
def test_floats_must_fit_in_float32(value):
    with pytest.raises(ValueError, match=r"must be representable as a float32 \(\|x\| <= 3.4e38\)"):
        v.check_number("x", value)
    assert v.check_number("x", 3.0e38) == 3.0e38


def test_float32_rounding_must_satisfy_the_bounds():
    with pytest.raises(ValueError, match=r"must be < 1.0 in float32 \(it rounds to 1.0\). "
                                         r"Received: beta_2=0.999999999999"):
        v.check_probability("beta_2", 1 - 1e-12)
    with pytest.raises(ValueError, match=r"must be > 0 in float32 \(it rounds to 0.0\)"):
        v.check_positive("epsilon", 1e-300)
    with pytest.raises(ValueError, match=r"must be 0 or a normal float32"):
        v.check_positive("epsilon", 1e-45)  # subnormal: flushed to 0 by TensorFlow's CPU kernels
    assert v.check_probability("beta_2", 0.9999) == 0.9999
    assert v.check_non_negative("epsilon", 0.0) == 0.0


def test_the_float32_rounding_is_compared_with_the_bound_rounded_too():
    """Value and bound meet as float32 tensors: 0.1 <= 0.1 holds (both round to
    0.10000000149); 0.1000000001 > 0.1 does not (the same float32)."""
    assert v.check_number("x", 0.1, maximum=0.1) == 0.1
    assert v.check_number("x", 0.1, minimum=0.1) == 0.1
    with pytest.raises(ValueError, match=r"must be > 0.1 in float32 \(it rounds to 0.10000000149"):
        v.check_number("x", 0.1000000001, minimum=0.1, min_inclusive=False)


@pytest.mark.parametrize("value", [2.0, 1e300, 3.0e38])
def test_integers_refuse_floats(value):
    with pytest.raises(TypeError, match="must be an integer, not float"):
        v.check_positive("steps", value, integer=True)


def test_integers_must_fit_in_int64_and_loops_are_bounded():
    with pytest.raises(ValueError, match=r"must fit in a 64-bit integer"):
        v.check_positive("window", 10**30, integer=True)
    assert v.check_positive("window", 2**62, integer=True) == 2**62
    with pytest.raises(ValueError, match=r"must be <= 1000. Received: power_iterations=1001. Each"):
        v.check_unrolled_count("power_iterations", 1001)
    assert v.check_unrolled_count("power_iterations", 5) == 5


def test_seed():
    assert v.check_seed("seed", None) is None
    assert v.check_seed("seed", 2**32 - 1) == 2**32 - 1
    with pytest.raises(ValueError, match=r"must be <= 4294967295"):
        v.check_seed("seed", 2**32)
    with pytest.raises(ValueError, match=r"must be >= 0"):
        v.check_seed("seed", -1)
    with pytest.raises(TypeError, match="must be an integer"):
        v.check_seed("seed", 1.0)


def test_long_values_are_shortened_in_messages():
    with pytest.raises(ValueError) as info:
        v.check_number("x", 10**400)
    assert len(str(info.value)) < 300 and "(401 characters)" in str(info.value)
