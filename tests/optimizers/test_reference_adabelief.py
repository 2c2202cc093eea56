"""AdaBelief against optax 0.2.8 ``adabelief`` / ``scale_by_belief`` over 100 steps.

Epsilon placement pinned: ``epsilon_root`` is added to the state ``s`` every
step (optax ``eps_root``) and ``epsilon`` outside the square root (optax
``eps``). The quadratic run uses large values of both, where swapping them
changes the trajectory. This file also checks a weight-decay *schedule*
through the shared base (Keras's decoupled decay path).
"""

import keras
import optax

from keras_trainkit.optimizers import AdaBelief
from tests.optimizers import reference_problems as rp


def test_matches_optax_on_quadratic_with_pinned_epsilons():
    problem = rp.quadratic()
    ours = rp.run_keras(AdaBelief(0.01, epsilon=0.1, epsilon_root=1e-3), problem)
    reference = rp.run_optax(optax.adabelief(0.01, eps=0.1, eps_root=1e-3), problem)
    swapped = rp.run_optax(optax.adabelief(0.01, eps=1e-3, eps_root=0.1), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, swapped)


def test_matches_optax_on_rosenbrock_with_weight_decay():
    problem = rp.rosenbrock()
    ours = rp.run_keras(AdaBelief(0.002, weight_decay=0.1, exclude_from_weight_decay=["bias"]), problem)
    reference = rp.run_optax(rp.optax_chain(optax.scale_by_belief(), 0.002, 0.1, rp.MASK), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)


def test_weight_decay_schedule_matches_optax():
    """The schedule is evaluated at the update count 0, 1, 2, ... (optax's ``count``)."""
    schedule = keras.optimizers.schedules.PolynomialDecay(0.5, decay_steps=60, end_learning_rate=0.01)

    def reference_schedule(count):
        import jax.numpy as jnp

        fraction = jnp.minimum(count, 60) / 60.0
        return (0.5 - 0.01) * (1.0 - fraction) + 0.01

    problem = rp.quadratic(seed=2)
    ours = rp.run_keras(AdaBelief(0.02, weight_decay=schedule), problem)
    reference = rp.run_optax(rp.optax_chain(optax.scale_by_belief(), 0.02, reference_schedule), problem)
    rp.assert_matches(ours, reference)
    constant = rp.run_optax(rp.optax_chain(optax.scale_by_belief(), 0.02, 0.5), problem)
    rp.assert_differs(ours, constant)
