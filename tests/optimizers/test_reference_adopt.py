"""ADOPT against optax 0.2.8 ``contrib.adopt`` and pytorch-optimizer 4.1 ``ADOPT`` over 100 steps.

Conventions pinned here:

* epsilon is a floor, ``max(sqrt(v), eps)`` (optax, pytorch-optimizer, the
  authors): with clipping off and a large epsilon the step changes;
* the clipping bound is ``(t - 1)**0.25`` for the 1-based update count ``t``
  (optax and the authors' 0-based ``step**0.25``); pytorch-optimizer's
  ``clip_lambda`` gets the 1-based count (``t**0.25``): it matches ours only
  when given ``(step - 1)**0.25``, and its default gives another trajectory;
* decoupled weight decay scaled by the learning rate, before the step:
  optax's ``add_decayed_weights`` before ``scale_by_learning_rate``.

float16 variables: ours against optax run on float16 parameters (both round
every operation to float16), within 5e-3 normwise (about four float16 ulps;
measured 2e-3).
"""

import math

import numpy as np
import optax
import pytest

from keras_trainkit.optimizers import ADOPT
from tests.optimizers import reference_problems as rp
from tests.optimizers import reference_drivers as tr


def test_matches_optax_on_quadratic():
    problem = rp.quadratic()
    ours = rp.run_keras(ADOPT(0.01), problem)
    reference = rp.run_optax(optax.contrib.adopt(0.01), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)


def test_matches_optax_on_rosenbrock_with_weight_decay_and_exclusion():
    problem = rp.rosenbrock()
    ours = rp.run_keras(ADOPT(0.002, weight_decay=0.5, exclude_from_weight_decay=["bias"]), problem)
    reference = rp.run_optax(rp.optax_chain(optax.contrib.scale_by_adopt(), 0.002, 0.5, rp.MASK), problem)
    no_decay = rp.run_optax(optax.contrib.adopt(0.002), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, no_decay)


def test_nesterov_matches_optax():
    problem = rp.quadratic(seed=2)
    ours = rp.run_keras(ADOPT(0.01, beta_1=0.8, beta_2=0.99, nesterov=True), problem)
    reference = rp.run_optax(optax.contrib.adopt(0.01, b1=0.8, b2=0.99, nesterov=True), problem)
    plain = rp.run_optax(optax.contrib.adopt(0.01, b1=0.8, b2=0.99), problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, plain)


def test_epsilon_is_a_floor_on_sqrt_v():
    problem = rp.quadratic(seed=1)
    ours = rp.run_keras(ADOPT(0.01, epsilon=20.0, use_clipping=False), problem)
    reference = rp.run_optax(optax.contrib.adopt(0.01, eps=20.0, use_clipping=False), problem)
    small = rp.run_optax(optax.contrib.adopt(0.01, eps=1e-6, use_clipping=False), problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, small)


def test_clipping_bound_against_pytorch_optimizer():
    """Equal to pytorch-optimizer given ``(step - 1)**0.25``; its default ``step**0.25`` differs."""
    from pytorch_optimizer import ADOPT as TorchADOPT

    problem = rp.quadratic()  # the clip binds here in the first steps (not on the Rosenbrock start)
    ours = rp.run_keras(ADOPT(0.01), problem)
    shifted = tr.run_torch(
        lambda p: TorchADOPT(p, lr=0.01, clip_lambda=lambda step: math.pow(step - 1, 0.25), foreach=False), problem
    )
    default = tr.run_torch(lambda p: TorchADOPT(p, lr=0.01, foreach=False), problem)
    rp.assert_moved(shifted, problem)
    rp.assert_matches(ours, shifted)
    rp.assert_differs(ours, default)
    unclipped = rp.run_keras(ADOPT(0.01, use_clipping=False), problem)
    rp.assert_differs(ours, unclipped)


def test_float16_variables_match_optax_in_float16():
    problem = tr.as_float16(rp.quadratic())
    ours = rp.run_keras(ADOPT(0.01), problem)
    reference = rp.run_optax(optax.contrib.adopt(0.01), problem)
    assert ours.dtype == np.float16
    rp.assert_moved(reference.astype(np.float32), problem)
    rp.assert_matches(ours.astype(np.float32), reference.astype(np.float32), rtol=5e-3)


@pytest.mark.parametrize("bad", [{"beta_1": 1.0}, {"beta_2": -0.1}, {"epsilon": 0.0}])
def test_invalid_arguments(bad):
    with pytest.raises(ValueError, match="Received:"):
        ADOPT(**bad)


def test_invalid_flag_type():
    with pytest.raises(TypeError, match="Received: use_clipping="):
        ADOPT(use_clipping="yes")
