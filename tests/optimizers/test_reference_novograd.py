"""NovoGrad against optax 0.2.8 ``novograd`` over 100 steps.

Same defaults passed explicitly (``b1=0.95, b2=0.98``). Epsilon placement
pinned: outside the square root of the per-variable scalar moment (optax
``eps`` with ``eps_root=0``); the quadratic run uses a large epsilon where the
inside placement differs. Weight decay is coupled into the momentum in both.
optax has no decay mask, so the decay run decays every variable.
"""

import optax

from keras_trainkit.optimizers import NovoGrad
from tests.optimizers import reference_problems as rp


def test_matches_optax_on_quadratic_with_epsilon_outside_sqrt():
    problem = rp.quadratic()
    ours = rp.run_keras(NovoGrad(0.01, epsilon=0.5), problem)
    reference = rp.run_optax(optax.novograd(0.01, b1=0.95, b2=0.98, eps=0.5, eps_root=0.0), problem)
    inside = rp.run_optax(optax.novograd(0.01, b1=0.95, b2=0.98, eps=0.0, eps_root=0.5), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, inside)


def test_matches_optax_on_rosenbrock_with_coupled_weight_decay():
    problem = rp.rosenbrock()
    ours = rp.run_keras(NovoGrad(0.002, beta_1=0.9, beta_2=0.25, weight_decay=0.1), problem)
    reference = rp.run_optax(optax.novograd(0.002, b1=0.9, b2=0.25, eps=1e-8, weight_decay=0.1), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
