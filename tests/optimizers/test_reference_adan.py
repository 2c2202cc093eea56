"""Adan against a numpy transcription of the paper's Algorithm 1, and against optax where they agree.

optax 0.2.8 ``adan`` weights the gradient difference by ``1 - b2`` and applies
decoupled (AdamW-style) decay; the paper (Algorithm 1, with its ``beta_2`` equal
to ``1 - b2`` here) and the authors' code weight it by ``b2`` and decay with a
proximal step ``w <- (w - lr u) / (1 + lr weight_decay)``. We follow the
paper, so:

* the main runs compare with the transcription below (paper notation, the
  authors' bias correction), over 100 steps, with the default betas and decay;
* with ``b2 = 0.5`` (where ``b2 = 1 - b2``) and no decay, optax ``adan`` is an
  independent check of the same code path.

Epsilon placement pinned: outside the square root of the bias-corrected ``n``
(optax ``eps`` with ``eps_root=0``; the transcription's ``sqrt(n_hat) + eps``).
"""

import numpy as np
import optax

from keras_trainkit.optimizers import Adan
from tests.optimizers import reference_problems as rp


def paper_adan(lr, beta1, beta2, beta3, eps, weight_decay=0.0, decayed=lambda name: True):
    """Algorithm 1 of Xie et al. (2022) in the paper's notation (``beta_i`` weights the new term)."""
    state = {}

    def step(params, grads, k):
        new = {}
        for name, theta in params.items():
            g = grads[name].astype(np.float64)
            if name not in state:
                state[name] = dict(m=0.0 * g, v=0.0 * g, n=0.0 * g, g_prev=g.copy())
            s = state[name]
            diff = g - s["g_prev"]  # zero at k = 1
            s["m"] = (1 - beta1) * s["m"] + beta1 * g
            s["v"] = (1 - beta2) * s["v"] + beta2 * diff
            s["n"] = (1 - beta3) * s["n"] + beta3 * (g + (1 - beta2) * diff) ** 2
            s["g_prev"] = g
            m_hat = s["m"] / (1 - (1 - beta1) ** k)
            v_hat = s["v"] / (1 - (1 - beta2) ** k)
            n_hat = s["n"] / (1 - (1 - beta3) ** k)
            eta = lr / (np.sqrt(n_hat) + eps)
            theta = theta.astype(np.float64) - eta * (m_hat + (1 - beta2) * v_hat)
            if decayed(name):
                theta = theta / (1 + lr * weight_decay)
            new[name] = theta
        return new

    return step


def test_matches_paper_on_quadratic_with_large_epsilon():
    problem = rp.quadratic()
    ours = rp.run_keras(Adan(0.01, epsilon=0.1), problem)
    reference = rp.run_numpy(paper_adan(0.01, 0.02, 0.08, 0.01, eps=0.1), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)


def test_matches_paper_on_rosenbrock_with_proximal_weight_decay():
    problem = rp.rosenbrock()
    ours = rp.run_keras(Adan(0.002, weight_decay=0.5, exclude_from_weight_decay=["bias"]), problem)
    reference = rp.run_numpy(
        paper_adan(0.002, 0.02, 0.08, 0.01, eps=1e-8, weight_decay=0.5, decayed=lambda name: name != "bias"),
        problem,
    )
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    no_decay = rp.run_numpy(paper_adan(0.002, 0.02, 0.08, 0.01, eps=1e-8), problem)
    rp.assert_differs(ours, no_decay)


def test_matches_optax_where_the_conventions_agree():
    problem = rp.quadratic(seed=3)
    ours = rp.run_keras(Adan(0.01, beta_2=0.5, epsilon=0.1), problem)
    reference = rp.run_optax(optax.adan(0.01, b1=0.98, b2=0.5, b3=0.99, eps=0.1, eps_root=0.0), problem)
    inside = rp.run_optax(optax.adan(0.01, b1=0.98, b2=0.5, b3=0.99, eps=0.0, eps_root=0.1), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, inside)
