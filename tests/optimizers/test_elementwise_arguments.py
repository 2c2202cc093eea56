"""Bad constructor arguments of the element-wise optimizers raise errors naming the argument and value."""

import re

import keras
import numpy as np
import pytest

import keras_trainkit.optimizers as optimizers
from keras_trainkit.optimizers import LARS, AdaBelief, Adan, NovoGrad, Prodigy, RAdam, Yogi

ALL = [RAdam, AdaBelief, Yogi, NovoGrad, Adan, LARS, Prodigy]
WITH_BETAS = [RAdam, AdaBelief, Yogi, NovoGrad, Adan, Prodigy]
WITH_POSITIVE_EPSILON = [RAdam, AdaBelief, Yogi, NovoGrad, Adan, Prodigy]


def _id(value):
    return getattr(value, "__name__", repr(value))


@pytest.mark.parametrize("cls", ALL, ids=_id)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"learning_rate": -1.0},
        {"learning_rate": float("nan")},
        {"weight_decay": -0.1},
        {"clipnorm": 0.0},
        {"gradient_accumulation_steps": 1},
        {"ema_momentum": 1.5},
    ],
    ids=_id,
)
def test_shared_arguments(cls, kwargs):
    (name, value), = kwargs.items()
    with pytest.raises(ValueError, match=f"Received: {name}={value!r}"):
        cls(**kwargs)


@pytest.mark.parametrize("cls", WITH_BETAS, ids=_id)
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_betas_outside_unit_interval(cls, value):
    for name in ("beta_1", "beta_2"):
        with pytest.raises(ValueError, match=f"Received: {name}={value!r}"):
            cls(**{name: value})


@pytest.mark.parametrize("cls", WITH_POSITIVE_EPSILON, ids=_id)
@pytest.mark.parametrize("value", [0.0, -1e-8])
def test_epsilon_must_be_positive(cls, value):
    with pytest.raises(ValueError, match=f"Received: epsilon={value!r}"):
        cls(epsilon=value)


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (Adan, {"beta_3": 1.0}),
        (Prodigy, {"beta_3": -0.5}),
        (Prodigy, {"d0": 0.0}),
        (Prodigy, {"d_coef": -1.0}),
        (RAdam, {"sma_threshold": 0.0}),
        (RAdam, {"total_steps": -1}),
        (RAdam, {"warmup_proportion": 1.5}),
        (RAdam, {"min_lr": -1e-3}),
        (AdaBelief, {"epsilon_root": -1.0}),
        (Yogi, {"initial_accumulator_value": -1.0}),
        (LARS, {"momentum": 1.0}),
        (LARS, {"trust_coefficient": 0.0}),
        (LARS, {"epsilon": -1.0}),
        (AdaBelief, {"exclude_from_weight_decay": ["("]}),
    ],
    ids=lambda v: _id(v) if isinstance(v, type) else "-".join(f"{k}={v[k]!r}" for k in v),
)
def test_specific_arguments(cls, kwargs):
    (name, value), = kwargs.items()
    with pytest.raises(ValueError, match=f"Received: {name}="):
        cls(**kwargs)
    del value


@pytest.mark.parametrize(
    "kwargs",
    [
        {"learning_rate": "fast"},
        {"beta_1": None},
        {"epsilon": True},
        {"exclude_from_weight_decay": "bias"},
        {"name": 3},
        {"use_ema": "yes"},
    ],
    ids=_id,
)
def test_wrong_types_are_type_errors(kwargs):
    (name, _), = kwargs.items()
    with pytest.raises(TypeError, match=f"Received: {name}="):
        AdaBelief(**kwargs)
    with pytest.raises(TypeError, match="Received: nesterov="):
        LARS(nesterov=1)


def test_valid_edge_values_are_accepted():
    RAdam(learning_rate=0, beta_1=0.0, warmup_proportion=1.0, total_steps=10)
    LARS(epsilon=0.0, momentum=0.0)
    AdaBelief(weight_decay=keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5))
    assert isinstance(NovoGrad(learning_rate=1).get_config()["learning_rate"], float)


TRAINKIT_OPTIMIZERS = [
    cls for cls in optimizers.REGISTRY.classes.values() if issubclass(cls, optimizers.TrainkitOptimizer)
]


@pytest.mark.parametrize("cls", TRAINKIT_OPTIMIZERS, ids=_id)
@pytest.mark.parametrize("name, value", [("gradient_accumulation_steps", 2.0),
                                         ("gradient_accumulation_steps", np.float32(3.0)),
                                         ("ema_overwrite_frequency", 5.0)])
def test_keras_step_counts_must_be_integers(cls, name, value):
    """``RAdam(gradient_accumulation_steps=2.0)`` passed validation and failed at the first step."""
    extra = {"use_ema": True} if name == "ema_overwrite_frequency" else {}
    with pytest.raises(TypeError, match=re.escape(f"Received: {name}={value!r}")):
        cls(**{name: value}, **extra)


@pytest.mark.parametrize("cls", TRAINKIT_OPTIMIZERS, ids=_id)
def test_integer_step_counts_train(cls):
    optimizer = cls(gradient_accumulation_steps=np.int64(2), use_ema=True, ema_overwrite_frequency=2)
    variable = keras.Variable(np.ones((2, 2), "float32"))
    for _ in range(4):
        optimizer.apply([np.full((2, 2), 0.5, "float32")], [variable])
    assert int(optimizer.iterations) == 2
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(variable)))


def test_adabelief_refuses_beta_1_zero():
    """With beta_1 = 0 the belief (g - m_t)**2 is 0: training diverged (losses 3.98e25, nan)."""
    with pytest.raises(ValueError, match=r"must be > 0.0. Received: beta_1=0.0\. With beta_1 = 0"):
        AdaBelief(beta_1=0.0)
    AdaBelief(beta_1=0.5)
