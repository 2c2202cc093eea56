"""MARS (AdamW form) against pytorch-optimizer 4.1 ``MARS`` and a transcription of the authors' code.

Conventions pinned here:

* rank >= 2 variables get MARS, the others AdamW with their own betas,
  learning rate and decay (pytorch-optimizer's ``optimize_1d=False``,
  ``betas_1d``, ``lr_1d``, ``weight_decay_1d``);
* epsilon outside the square root of the bias-corrected ``v``, as in the
  authors' ``update_fn`` (transcribed below): with a large epsilon we match
  the transcription, and pytorch-optimizer, which adds epsilon before the bias
  correction, gives another trajectory;
* the correction ``c`` is clipped to unit Frobenius norm per variable, with
  ``g_0 = 0`` (the authors' approximate MARS).

float16 variables: against pytorch-optimizer on float16 parameters within
1e-2 normwise (about eight float16 ulps).
"""

import numpy as np
import pytest

from keras_trainkit.optimizers import MARS
from tests.optimizers import reference_problems as rp
from tests.optimizers import reference_drivers as tr

torch_optimizer = pytest.importorskip("pytorch_optimizer")


def authors_mars(lr, beta_1, beta_2, gamma, eps, wd, adam_betas, adam_lr, adam_wd):
    """The authors' ``update_fn`` (mars-adamw, is_approx=True, optimize_1d=False) in numpy."""
    state = {}

    def step(params, grads, t):
        new = {}
        for name, p in params.items():
            g = grads[name].astype(np.float64)
            s = state.setdefault(name, dict(m=0 * g, v=0 * g, last=0 * g))
            p = p.astype(np.float64)
            if p.ndim >= 2:
                c = g + gamma * beta_1 / (1 - beta_1) * (g - s["last"])
                norm = np.linalg.norm(c)
                if norm > 1:
                    c = c / norm
                b1, b2, rate, decay = beta_1, beta_2, lr, wd
            else:
                c = g
                (b1, b2), rate, decay = adam_betas, adam_lr, adam_wd
            s["m"] = b1 * s["m"] + (1 - b1) * c
            s["v"] = b2 * s["v"] + (1 - b2) * c * c
            denom = (np.sqrt(s["v"]) / np.sqrt(1 - b2**t) + eps) * (1 - b1**t)
            new[name] = p - rate * (decay * p + s["m"] / denom)
            s["last"] = g
        return new

    return step


def torch_mars(**kwargs):
    return lambda params: torch_optimizer.MARS(params, foreach=False, **kwargs)


@pytest.mark.parametrize("name, lr", [("quadratic", 0.01), ("rosenbrock", 0.002)])
def test_matches_pytorch_optimizer_with_both_branches_decayed(name, lr):
    problem = rp.PROBLEMS[name]()
    ours = rp.run_keras(MARS(lr, weight_decay=0.05, adam_learning_rate=lr / 2, adam_weight_decay=0.1), problem)
    reference = rp.run_numpy(authors_mars(lr, 0.95, 0.99, 0.025, 1e-8, 0.05, (0.9, 0.95), lr / 2, 0.1), problem)
    torch_reference = tr.run_torch(torch_mars(lr=lr, weight_decay=0.05, lr_1d=lr / 2, weight_decay_1d=0.1), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    rp.assert_matches(ours, torch_reference)


def test_epsilon_after_the_bias_correction_as_the_authors():
    problem = rp.quadratic(seed=1)
    ours = rp.run_keras(MARS(0.01, epsilon=0.5, adam_weight_decay=0.0), problem)
    reference = rp.run_numpy(authors_mars(0.01, 0.95, 0.99, 0.025, 0.5, 0.0, (0.9, 0.95), 0.01, 0.0), problem)
    before = tr.run_torch(torch_mars(lr=0.01, eps=0.5, weight_decay_1d=0.0), problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, before)


def test_optimize_1d_and_gamma_match_pytorch_optimizer():
    problem = rp.rosenbrock()
    ours = rp.run_keras(MARS(0.002, gamma=0.1, beta_1=0.9, optimize_1d=True), problem)
    reference = tr.run_torch(torch_mars(lr=0.002, gamma=0.1, betas=(0.9, 0.99), optimize_1d=True), problem)
    adamw_bias = rp.run_keras(MARS(0.002, gamma=0.1, beta_1=0.9), problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, adamw_bias)


def test_gradient_correction_changes_the_trajectory():
    problem = rp.quadratic(seed=3)
    with_correction = rp.run_keras(MARS(0.01, gamma=0.05), problem)
    without = rp.run_keras(MARS(0.01, gamma=0.0), problem)
    reference = rp.run_numpy(authors_mars(0.01, 0.95, 0.99, 0.0, 1e-8, 0.0, (0.9, 0.95), 0.01, 0.0), problem)
    rp.assert_matches(without, reference)
    rp.assert_differs(with_correction, without)


def test_float16_variables_match_pytorch_optimizer_in_float16():
    problem = tr.as_float16(rp.quadratic())
    ours = rp.run_keras(MARS(0.01, adam_weight_decay=0.0), problem)
    reference = tr.run_torch(torch_mars(lr=0.01, lr_1d=0.01, weight_decay_1d=0.0), problem)
    assert ours.dtype == np.float16
    rp.assert_moved(reference.astype(np.float32), problem)
    rp.assert_matches(ours.astype(np.float32), reference.astype(np.float32), rtol=1e-2)


@pytest.mark.parametrize(
    "bad", [{"gamma": -0.1}, {"adam_beta_2": 1.0}, {"adam_learning_rate": -1.0}, {"adam_weight_decay": -0.1}]
)
def test_invalid_arguments(bad):
    with pytest.raises(ValueError, match="Received:"):
        MARS(**bad)
