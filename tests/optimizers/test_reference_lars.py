"""LARS against optax 0.2.8 ``lars`` over 100 steps.

Configured the same way: weight decay added before the trust ratio,
``trust = trust_coefficient * ||w|| / (||g + wd w|| + eps)`` (1 on zero
norms), learning rate applied before the momentum trace. Epsilon placement
pinned: added to the update norm (optax ``eps``); the run with a large
epsilon differs from ``eps=0``. ``exclude_from_weight_decay=["bias"]``
matches optax's ``weight_decay_mask`` and ``trust_ratio_mask`` both set to
skip the bias. Also checks a weight-decay schedule on a path that applies the
decay inside ``update_step``.
"""

import keras
import optax

from keras_trainkit.optimizers import LARS
from tests.optimizers import reference_problems as rp


def test_matches_optax_on_quadratic_with_epsilon_in_trust_ratio():
    problem = rp.quadratic()
    ours = rp.run_keras(LARS(5.0, trust_coefficient=0.01, epsilon=1.0), problem)
    reference = rp.run_optax(optax.lars(5.0, trust_coefficient=0.01, eps=1.0), problem)
    no_epsilon = rp.run_optax(optax.lars(5.0, trust_coefficient=0.01, eps=0.0), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, no_epsilon)


def test_matches_optax_on_rosenbrock_with_weight_decay_masks_and_nesterov():
    problem = rp.rosenbrock()
    ours = rp.run_keras(
        LARS(
            2e-4,
            trust_coefficient=5.0,
            weight_decay=0.1,
            exclude_from_weight_decay=["bias"],
            nesterov=True,
            momentum=0.8,
        ),
        problem,
    )
    reference = rp.run_optax(
        optax.lars(
            2e-4,
            trust_coefficient=5.0,
            weight_decay=0.1,
            weight_decay_mask=rp.MASK,
            trust_ratio_mask=rp.MASK,
            momentum=0.8,
            nesterov=True,
        ),
        problem,
    )
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)


def test_weight_decay_schedule_matches_optax():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=20, decay_rate=0.5)
    problem = rp.quadratic(seed=4)
    ours = rp.run_keras(LARS(5.0, trust_coefficient=0.01, weight_decay=schedule), problem)
    reference = rp.run_optax(
        optax.lars(5.0, trust_coefficient=0.01, weight_decay=lambda count: 0.5 * 0.5 ** (count / 20.0)),
        problem,
    )
    constant = rp.run_optax(optax.lars(5.0, trust_coefficient=0.01, weight_decay=0.5), problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, constant)
