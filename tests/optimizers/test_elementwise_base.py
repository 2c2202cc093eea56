"""The shared base: weight decay as a float or schedule, name-pattern exclusions, config.

With a zero gradient the moments stay zero and only the weight decay moves the
weights, so each optimizer's decay rule can be checked by hand.
"""

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers import LARS, AdaBelief, Adan, NovoGrad, Prodigy, RAdam, Yogi

LR, WD = 0.1, 0.5


def zero_gradient_steps(optimizer, steps=3):
    kernel = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    bias = keras.Variable(np.ones((2,), "float32"), name="bias")
    for _ in range(steps):
        optimizer.apply([np.zeros((2, 2), "float32"), np.zeros((2,), "float32")], [kernel, bias])
    return np.asarray(kernel), np.asarray(bias)


def decoupled(wds):  # w <- w - lr * wd * w  (Keras/AdamW; RAdam, AdaBelief, Yogi; NovoGrad's m=wd*w at step 1 only)
    return np.prod([1 - LR * wd for wd in wds])


def proximal(wds):  # w <- w / (1 + lr * wd)  (Adan)
    return np.prod([1 / (1 + LR * wd) for wd in wds])


@pytest.mark.parametrize(
    "cls,rule", [(RAdam, decoupled), (AdaBelief, decoupled), (Yogi, decoupled), (Adan, proximal)]
)
def test_constant_weight_decay_and_exclusion(cls, rule):
    kernel, bias = zero_gradient_steps(cls(LR, weight_decay=WD, exclude_from_weight_decay=["bias"]))
    np.testing.assert_allclose(kernel, rule([WD] * 3), rtol=1e-6)
    np.testing.assert_array_equal(bias, 1.0)


@pytest.mark.parametrize("cls,rule", [(RAdam, decoupled), (AdaBelief, decoupled), (Adan, proximal)])
def test_weight_decay_schedule_is_evaluated_at_the_update_count(cls, rule):
    schedule = keras.optimizers.schedules.ExponentialDecay(WD, decay_steps=1, decay_rate=0.5)
    kernel, bias = zero_gradient_steps(cls(LR, weight_decay=schedule, exclude_from_weight_decay=["bias"]))
    np.testing.assert_allclose(kernel, rule([WD, WD / 2, WD / 4]), rtol=1e-6)
    np.testing.assert_array_equal(bias, 1.0)


def test_novograd_couples_decay_into_the_momentum():
    # u_t = wd * w_t, m_t = beta_1 m + u_t, w <- w - lr m_t
    kernel, _ = zero_gradient_steps(NovoGrad(LR, beta_1=0.5, weight_decay=WD), steps=2)
    w1 = 1 - LR * WD
    m2 = 0.5 * WD + WD * w1
    np.testing.assert_allclose(kernel, w1 - LR * m2, rtol=1e-6)


def test_excluded_variables_skip_lars_decay_and_trust_ratio():
    kernel, bias = zero_gradient_steps(LARS(LR, momentum=0.0, weight_decay=WD, exclude_from_weight_decay=["bias"]), 1)
    # kernel: u = wd w, trust = 1e-3 ||w|| / ||wd w|| = 1e-3 / wd -> w - lr * 1e-3 * w
    np.testing.assert_allclose(kernel, 1 - LR * 1e-3, rtol=1e-6)
    np.testing.assert_array_equal(bias, 1.0)


def test_weight_decay_property_and_config_round_trip():
    schedule = keras.optimizers.schedules.PolynomialDecay(0.1, decay_steps=10, end_learning_rate=0.0)
    optimizer = Prodigy(weight_decay=schedule, exclude_from_weight_decay=["bias", "gamma"])
    assert float(optimizer.weight_decay) == pytest.approx(0.1)  # the value at iteration 0
    config = optimizer.get_config()
    assert config["exclude_from_weight_decay"] == ["bias", "gamma"]
    rebuilt = Prodigy.from_config(config)
    assert isinstance(rebuilt._weight_decay, keras.optimizers.schedules.PolynomialDecay)
    assert rebuilt.get_config() == config
    assert AdaBelief(weight_decay=0.01).get_config()["weight_decay"] == 0.01
    assert AdaBelief().get_config()["exclude_from_weight_decay"] is None


def test_keras_exclusion_method_still_works():
    optimizer = AdaBelief(LR, weight_decay=WD)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    kernel, bias = zero_gradient_steps(optimizer, 1)
    np.testing.assert_array_equal(kernel, 1.0)
    np.testing.assert_allclose(bias, 1 - LR * WD, rtol=1e-6)
