"""AdEMAMix against optax 0.2.8 ``contrib.ademamix`` and pytorch-optimizer 4.1 ``AdEMAMix`` over 100 steps.

Conventions pinned here:

* epsilon outside the square root of the bias-corrected second moment
  (optax ``eps`` with ``eps_root=0``; an ``eps_root`` run differs);
* no bias correction on the slow EMA (both references);
* with ``warmup_steps=T`` the paper's schedulers at the 1-based update count,
  as pytorch-optimizer's ``t_alpha_beta3``; optax takes schedules of its
  0-based count, so the same run needs ``alpha(count + 1)`` there, and
  ``alpha(count)`` gives another trajectory;
* decoupled weight decay scaled by the learning rate (optax ``weight_decay``
  with ``mask``).

The float32 checks against pytorch-optimizer use 2e-5: its update sums the
terms in another order (``exp_avg / bc1 + alpha * slow``, then ``addcdiv``),
which moves our float32 trajectory by up to 6e-6 over 100 steps; optax agrees
to 1.5e-6. float16 variables: against pytorch-optimizer on float16 parameters
within 2e-2 (measured 1.2e-2; both round every operation to float16).
"""

import math

import numpy as np
import optax
import pytest

from keras_trainkit.optimizers import AdEMAMix
from keras_trainkit.optimizers.ademamix import alpha_schedule, beta_3_schedule
from tests.optimizers import reference_problems as rp
from tests.optimizers import reference_drivers as tr


def paper_schedules(alpha, beta_1, beta_3, warmup):
    """Section 3 of the paper, in numpy, at the 1-based step ``t``."""

    def alpha_t(t):
        return min(t * alpha / warmup, alpha)

    def beta_3_t(t):
        log_1, log_3 = math.log(beta_1), math.log(beta_3)
        return min(math.exp(log_1 * log_3 / ((1 - t / warmup) * log_3 + (t / warmup) * log_1)), beta_3)

    return alpha_t, beta_3_t


def test_schedules_match_the_paper_formulas():
    alpha_t, beta_3_t = paper_schedules(8.0, 0.9, 0.9999, 100)
    for t in (1, 2, 50, 99, 100, 101, 1000):
        step = np.float32(t)
        assert float(alpha_schedule(8.0, step, 100)) == pytest.approx(alpha_t(t), rel=1e-6)
        assert float(beta_3_schedule(0.9, 0.9999, step, 100)) == pytest.approx(beta_3_t(t), rel=1e-6)
    assert float(beta_3_schedule(0.9, 0.9999, np.float32(1.0), 100)) < 0.9999
    assert float(alpha_schedule(8.0, np.float32(7.0), 0)) == 8.0


def test_matches_optax_on_quadratic():
    problem = rp.quadratic()
    ours = rp.run_keras(AdEMAMix(0.01, beta_3=0.999), problem)
    reference = rp.run_optax(optax.contrib.ademamix(0.01, b3=0.999), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)


def test_matches_optax_on_rosenbrock_with_weight_decay_and_exclusion():
    problem = rp.rosenbrock()
    ours = rp.run_keras(
        AdEMAMix(0.002, alpha=3.0, weight_decay=0.5, exclude_from_weight_decay=["bias"]), problem
    )
    reference = rp.run_optax(optax.contrib.ademamix(0.002, alpha=3.0, weight_decay=0.5, mask=rp.MASK), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)


def test_epsilon_outside_the_square_root():
    problem = rp.quadratic(seed=1)
    ours = rp.run_keras(AdEMAMix(0.01, beta_3=0.99, epsilon=1.0), problem)
    reference = rp.run_optax(optax.contrib.ademamix(0.01, b3=0.99, eps=1.0), problem)
    inside = rp.run_optax(optax.contrib.ademamix(0.01, b3=0.99, eps=0.0, eps_root=1.0), problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, inside)


def test_warmup_matches_optax_with_the_schedules_at_count_plus_one():
    problem = rp.quadratic(seed=2)
    alpha_t, beta_3_t = paper_schedules(5.0, 0.9, 0.999, 60)
    ours = rp.run_keras(AdEMAMix(0.01, beta_3=0.999, warmup_steps=60), problem)

    def schedules(shift):
        import jax.numpy as jnp

        def alpha(count):
            t = count + shift
            return jnp.minimum(t * 5.0 / 60, 5.0)

        def beta_3(count):
            t = count + shift
            log_1, log_3 = math.log(0.9), math.log(0.999)
            exponent = log_1 * log_3 / ((1 - t / 60) * log_3 + (t / 60) * log_1)
            return jnp.minimum(jnp.exp(exponent), 0.999)

        return alpha, beta_3

    alpha, beta_3 = schedules(1)
    reference = rp.run_optax(optax.contrib.ademamix(0.01, b3=beta_3, alpha=alpha), problem)
    alpha0, beta_30 = schedules(0)
    zero_based = rp.run_optax(optax.contrib.ademamix(0.01, b3=beta_30, alpha=alpha0), problem)
    constant = rp.run_keras(AdEMAMix(0.01, beta_3=0.999), problem)
    assert alpha(np.int32(0)) == pytest.approx(alpha_t(1))
    assert beta_3(np.int32(9)) == pytest.approx(beta_3_t(10), rel=1e-6)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, zero_based)
    rp.assert_differs(ours, constant)


def test_warmup_matches_pytorch_optimizer():
    from pytorch_optimizer import AdEMAMix as TorchAdEMAMix

    problem = rp.rosenbrock()
    ours = rp.run_keras(AdEMAMix(0.002, beta_3=0.9995, alpha=6.0, warmup_steps=80, weight_decay=0.1), problem)
    reference = tr.run_torch(
        lambda p: TorchAdEMAMix(
            p, lr=0.002, betas=(0.9, 0.999, 0.9995), alpha=6.0, t_alpha_beta3=80, weight_decay=0.1,
            weight_decouple=True, foreach=False,
        ),
        problem,
    )
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference, rtol=2e-5)


def test_float16_variables_match_pytorch_optimizer_in_float16():
    from pytorch_optimizer import AdEMAMix as TorchAdEMAMix

    problem = tr.as_float16(rp.quadratic())
    ours = rp.run_keras(AdEMAMix(0.01, beta_3=0.999, warmup_steps=50), problem)
    reference = tr.run_torch(
        lambda p: TorchAdEMAMix(p, lr=0.01, betas=(0.9, 0.999, 0.999), t_alpha_beta3=50, foreach=False), problem
    )
    assert ours.dtype == np.float16
    rp.assert_moved(reference.astype(np.float32), problem)
    rp.assert_matches(ours.astype(np.float32), reference.astype(np.float32), rtol=2e-2)


def test_float16_slow_average_moves_with_beta_3_near_one():
    """0.9999 rounds to 1.0 in float16; the slow EMA's weight 1e-4 must not."""
    problem = tr.as_float16(rp.quadratic())
    with_slow = rp.run_keras(AdEMAMix(0.01, beta_3=0.9999, alpha=5.0), problem).astype(np.float32)
    without = rp.run_keras(AdEMAMix(0.01, beta_3=0.9999, alpha=0.0), problem).astype(np.float32)
    rp.assert_differs(with_slow, without, minimum=1e-2)


@pytest.mark.parametrize(
    "bad",
    [{"beta_3": 1.0}, {"alpha": -1.0}, {"warmup_steps": -1}, {"warmup_steps": 10, "beta_1": 0.0},
     {"warmup_steps": 10, "beta_3": 0.5}, {"epsilon": 0.0}],
)
def test_invalid_arguments(bad):
    with pytest.raises(ValueError, match="Received:"):
        AdEMAMix(**bad)
