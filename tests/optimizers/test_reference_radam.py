"""RAdam against optax 0.2.8 ``radam`` / ``scale_by_radam`` over 100 steps, and a float64 numpy transcription.

Epsilon placement pinned: outside the square root of the bias-corrected second
moment (optax ``eps``, with ``eps_root=0``); the threshold on ``rho_t`` is 5 in
both. The quadratic run uses a large epsilon, where putting it inside the
square root gives a different trajectory.

The references run in float64 (``jax.enable_x64``; numpy): our float32 RAdam
evaluates its step scalars without cancellation, while optax's float32
``rho_t`` is off by up to 2e-2 at ``t = 6`` (``beta_2 = 0.999``), which moves
its float32 trajectory by 2.6e-5 (relative) from its own float64 one on the
quadratic. Ours stays within 3e-7 of the float64 one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from keras import ops

from keras_trainkit.optimizers import RAdam
from keras_trainkit.optimizers.radam import one_minus_power, rectifier_terms
from tests.optimizers import reference_problems as rp

FLOAT32_VS_FLOAT64 = 2e-6


def run_optax64(transform, problem):
    """The optax trajectory in float64 from the float32 problem's starting point."""
    with jax.enable_x64(True):
        return rp.run_optax(transform, rp.as_float64(problem))


def test_matches_optax_on_quadratic_with_epsilon_outside_sqrt():
    problem = rp.quadratic()
    ours = rp.run_keras(RAdam(0.01, epsilon=0.1), problem)
    reference = run_optax64(optax.radam(0.01, eps=0.1, eps_root=0.0, threshold=5.0), problem)
    inside = rp.run_optax(optax.radam(0.01, eps=0.0, eps_root=0.1, threshold=5.0), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference, rtol=FLOAT32_VS_FLOAT64)
    rp.assert_differs(ours, inside)


def test_matches_optax_on_rosenbrock_with_weight_decay():
    problem = rp.rosenbrock()
    ours = rp.run_keras(RAdam(0.002, weight_decay=0.1, exclude_from_weight_decay=["bias"]), problem)
    reference = run_optax64(rp.optax_chain(optax.scale_by_radam(eps=1e-8), 0.002, 0.1, rp.MASK), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference, rtol=FLOAT32_VS_FLOAT64)


def test_warmup_and_decay_match_a_transcription_of_addons_schedule():
    """``total_steps``: linear warm-up to lr, then linear decay to ``min_lr`` (TF Addons RectifiedAdam)."""
    lr, total, proportion, min_lr = 0.01, 80, 0.25, 1e-3

    def schedule(count):  # optax counts updates from 0; Addons' step t from 1
        t = count + 1.0
        warmup = total * proportion
        decay_steps = max(total - warmup, 1.0)
        warm = lr * t / warmup
        decayed = lr + (min_lr - lr) / decay_steps * jnp.minimum(t - warmup, decay_steps)
        return jnp.where(t <= warmup, warm, decayed)

    problem = rp.quadratic(seed=1)
    ours = rp.run_keras(
        RAdam(lr, total_steps=total, warmup_proportion=proportion, min_lr=min_lr, weight_decay=0.05),
        problem,
    )
    reference = run_optax64(rp.optax_chain(optax.scale_by_radam(), schedule, 0.05), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference, rtol=FLOAT32_VS_FLOAT64)
    # Without the warm-up the trajectory is different, so the test can fail.
    rp.assert_differs(ours, rp.run_optax(rp.optax_chain(optax.scale_by_radam(), lr, 0.05), problem))



@pytest.mark.parametrize("beta_2", [0.999, 0.9999, 0.99, 0.95, 0.5, 0.0])
def test_step_scalars_equal_float64_formulas(beta_2):
    """``rho_t`` and ``1 - beta**t`` in float32 against the direct formulas in float64, t = 1..20000."""
    t = np.arange(1, 20001, dtype="float64")
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = rho_inf - 2.0 * t * beta_2**t / (1.0 - beta_2**t)
    rho_t, got_inf = rectifier_terms(beta_2, ops.convert_to_tensor(t.astype("float32")), "float32")
    assert got_inf == rho_inf
    rho_t = np.asarray(ops.convert_to_numpy(rho_t), "float64")
    np.testing.assert_allclose(rho_t, expected, rtol=5e-7, atol=1e-7)
    correction = np.asarray(ops.convert_to_numpy(one_minus_power(beta_2, ops.convert_to_tensor(t.astype("float32")),
                                                                 "float32")), "float64")
    np.testing.assert_allclose(correction, 1.0 - beta_2**t, rtol=5e-7)


def numpy_radam(learning_rate, beta_1, beta_2, epsilon, sma_threshold):
    """RAdam (Liu et al. 2020, Algorithm 2; epsilon outside the square root) in float64 numpy."""
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0

    def step(params, grads, t):
        out = {}
        for name, w in params.items():
            w, g = np.asarray(w, "float64"), np.asarray(grads[name], "float64")
            m, v = state.get(name, (np.zeros_like(w), np.zeros_like(w)))
            m = beta_1 * m + (1 - beta_1) * g
            v = beta_2 * v + (1 - beta_2) * g * g
            state[name] = (m, v)
            m_hat = m / (1 - beta_1**t)
            rho_t = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
            if rho_t >= sma_threshold:
                r_t = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                update = r_t * m_hat / (np.sqrt(v / (1 - beta_2**t)) + epsilon)
            else:
                update = m_hat
            out[name] = w - learning_rate * update
        return out

    state = {}
    return step


@pytest.mark.parametrize("beta_2", [0.999, 0.9999])
def test_matches_float64_numpy_transcription(beta_2):
    """Our float32 RAdam within float32 round-off of the float64 transcription, 100 steps.

    ``run_numpy`` rounds the transcription's weights to float32 after each step
    (the same starting point per step as ours); its step scalars are float64.
    """
    problem = rp.quadratic(seed=2)
    ours = rp.run_keras(RAdam(0.01, beta_2=beta_2, epsilon=1e-3), problem)
    reference = rp.run_numpy(numpy_radam(0.01, 0.9, beta_2, 1e-3, 5.0), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference, rtol=FLOAT32_VS_FLOAT64)
