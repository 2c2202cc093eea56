"""AdEMAMix's slow-EMA weight ``1 - beta_3`` against optax 0.2.8 ``contrib.ademamix``.

``beta_3`` is close to 1 (0.9999 by default, 0.99999 and above in the paper's
long runs), so ``1 - beta_3`` must not be taken from ``beta_3`` rounded to
float32: ``1 - float32(0.999999)`` is 1.3e-2 (relative) above ``1e-6``, and the
slow EMA, its weight times the sum of the gradients for ``t << 1 / (1 - beta_3)``,
carries that error. optax subtracts in Python float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from keras_trainkit.optimizers import AdEMAMix
from tests.optimizers import reference_problems as rp


@pytest.mark.parametrize("beta_3", [0.9999, 0.99999, 0.999999])
def test_slow_ema_matches_optax_in_float32(beta_3):
    problem = rp.quadratic()
    optimizer = AdEMAMix(0.01, beta_3=beta_3)
    rp.run_keras(optimizer, problem, steps=20)
    ours = optimizer._slow[0].numpy()  # the kernel's slow EMA

    transform = optax.contrib.ademamix(0.01, b3=beta_3, eps_root=0.0, weight_decay=0.0)
    params = {k: jnp.asarray(v) for k, v in problem.init.items()}
    state = transform.init(params)
    for _ in range(20):
        grads = rp.split(problem.grad(rp.flatten(params, jnp), jnp), jnp)
        updates, state = transform.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    reference = np.asarray(state[0].m2["kernel"])
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5 * np.abs(reference).max())


def test_float64_trajectory_matches_optax_in_float64():
    problem = rp.as_float64(rp.quadratic())
    ours = rp.run_keras(AdEMAMix(2.0**-7, beta_3=0.9999, alpha=5.0), problem)
    with jax.enable_x64(True):
        reference = rp.run_optax(
            optax.contrib.ademamix(2.0**-7, b3=0.9999, alpha=5.0, eps_root=0.0, weight_decay=0.0), problem
        )
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference, rtol=1e-12)
