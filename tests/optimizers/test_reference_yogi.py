"""Yogi against optax 0.2.8 ``yogi`` / ``scale_by_yogi`` over 100 steps.

Configured the same way: optax starts *both* moments at
``initial_accumulator_value``; ours (like TF Addons and the paper) starts the
first moment at zero, so the reference's initial ``mu`` is set to zero. Both
bias-correct. Epsilon placement pinned: outside the square root (optax ``eps``
with ``eps_root=0``); the quadratic run uses a large epsilon where the inside
placement differs.
"""

import jax.numpy as jnp
import optax

from keras_trainkit.optimizers import Yogi
from tests.optimizers import reference_problems as rp


def zero_first_moment(state):
    adam_state = state[0]
    mu = {k: jnp.zeros_like(v) for k, v in adam_state.mu.items()}
    return (adam_state._replace(mu=mu),) + tuple(state[1:])


def test_matches_optax_on_quadratic_with_epsilon_outside_sqrt():
    problem = rp.quadratic()
    ours = rp.run_keras(Yogi(0.01, epsilon=0.1), problem)
    reference = rp.run_optax(optax.yogi(0.01, eps=0.1), problem, edit_state=zero_first_moment)
    inside = rp.run_optax(
        rp.optax_chain(optax.scale_by_yogi(eps=0.0, eps_root=0.1), 0.01), problem, edit_state=zero_first_moment
    )
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, inside)


def test_matches_optax_on_rosenbrock_with_weight_decay():
    problem = rp.rosenbrock()
    ours = rp.run_keras(
        Yogi(0.002, initial_accumulator_value=1e-3, weight_decay=0.1, exclude_from_weight_decay=["bias"]), problem
    )
    reference = rp.run_optax(
        rp.optax_chain(optax.scale_by_yogi(initial_accumulator_value=1e-3), 0.002, 0.1, rp.MASK),
        problem,
        edit_state=zero_first_moment,
    )
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
