"""RAdam against optax 0.2.8 ``radam`` / ``scale_by_radam`` over 100 steps.

Epsilon placement pinned: outside the square root of the bias-corrected second
moment (optax ``eps``, with ``eps_root=0``); the threshold on ``rho_t`` is 5 in
both. The quadratic run uses a large epsilon, where putting it inside the
square root gives a different trajectory.
"""

import jax.numpy as jnp
import optax

from keras_trainkit.optimizers import RAdam
from tests.optimizers import reference_problems as rp


def test_matches_optax_on_quadratic_with_epsilon_outside_sqrt():
    problem = rp.quadratic()
    ours = rp.run_keras(RAdam(0.01, epsilon=0.1), problem)
    reference = rp.run_optax(optax.radam(0.01, eps=0.1, eps_root=0.0, threshold=5.0), problem)
    inside = rp.run_optax(optax.radam(0.01, eps=0.0, eps_root=0.1, threshold=5.0), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, inside)


def test_matches_optax_on_rosenbrock_with_weight_decay():
    problem = rp.rosenbrock()
    ours = rp.run_keras(RAdam(0.002, weight_decay=0.1, exclude_from_weight_decay=["bias"]), problem)
    reference = rp.run_optax(rp.optax_chain(optax.scale_by_radam(eps=1e-8), 0.002, 0.1, rp.MASK), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)


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
    reference = rp.run_optax(rp.optax_chain(optax.scale_by_radam(), schedule, 0.05), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    # Without the warm-up the trajectory is different, so the test can fail.
    rp.assert_differs(ours, rp.run_optax(rp.optax_chain(optax.scale_by_radam(), lr, 0.05), problem))

