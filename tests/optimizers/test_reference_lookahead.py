"""Lookahead against optax 0.2.8 ``lookahead`` over 120 steps, on every Keras backend.

The backend-neutral twin of ``test_lookahead.test_matches_optax_lookahead``
(TensorFlow only, which also reads the slow-weight slots at each sync): this one
runs through ``reference_problems.run_keras_loop`` (a ``tf.function`` loop on
TensorFlow, ``stateless_apply`` under ``jax.jit`` on JAX, an eager loop on
PyTorch), so the backend lane checks Lookahead's numbers on JAX and PyTorch too.

optax keeps the (fast, slow) pair as its parameters; our model weights are the
fast weights. At every sync both reset the fast weights to the new slow ones, so
matching the fast trajectory at each step also pins the slow weights at the syncs.
The fast optimizer is SGD with momentum 0.9 (Keras ``m = 0.9 m - lr g``, optax
``m = g + 0.9 m`` then ``-lr m``: the same steps).
"""

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers import Lookahead
from tests.optimizers import reference_problems as rp

optax = pytest.importorskip("optax")
STEPS = 120


def run_optax_lookahead(problem, lr, sync_period, alpha):
    """optax's lookahead on the problem's ``kernel``/``bias`` split; the fast weights, one row per step."""
    import jax
    import jax.numpy as jnp

    transform = optax.lookahead(optax.sgd(lr, momentum=0.9), sync_period=sync_period, slow_step_size=alpha)
    params = optax.LookaheadParams.init_synced({k: jnp.asarray(v) for k, v in problem.init.items()})
    state = transform.init(params)

    def step(carry, _):
        params, state = carry
        grads = rp.split(problem.grad(rp.flatten(params.fast, jnp), jnp), jnp)
        updates, state = transform.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), rp.flatten(params.fast, jnp)

    _, rows = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), None, length=STEPS))(params, state)
    return np.asarray(rows)


@pytest.mark.parametrize(
    "name, lr, sync_period, alpha",
    [("quadratic", 1e-2, 6, 0.5), ("rosenbrock", 2e-4, 5, 0.8)],
)
def test_matches_optax_lookahead(name, lr, sync_period, alpha):
    problem = rp.PROBLEMS[name]()
    ours = rp.run_keras(
        Lookahead(keras.optimizers.SGD(lr, momentum=0.9), sync_period=sync_period, slow_step_size=alpha),
        problem, steps=STEPS)
    reference = run_optax_lookahead(problem, lr, sync_period, alpha)
    plain = rp.run_keras(keras.optimizers.SGD(lr, momentum=0.9), problem, steps=STEPS)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, plain)  # the slow weights pull: not the inner optimizer alone
