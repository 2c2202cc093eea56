"""GradientNoise on the backend this process runs (the backend lane runs it on JAX and PyTorch).

Each backend has its own sampler (``noise.py``: Box-Muller on ``keras.random.uniform``,
TensorFlow's threefry normal under XLA, ``keras.random.normal`` on JAX), so each is
checked on its own: the noise a ``TransformedOptimizer(SGD(1.0), [GradientNoise])`` adds
to zero gradients is N(0, sigma_t^2) with the paper's schedule, fresh every step, and
repeats from the seed. On JAX the step runs as ``model.fit`` runs it there:
``stateless_apply`` under ``jax.jit``.
"""

import keras
import numpy as np

from keras_trainkit.optimizers import GradientNoise, TransformedOptimizer
from tests.optimizers.gaussian_checks import ETA, GAMMA, SHAPES, assert_step_noise

STEPS = 3


def _noise_per_step(seed=11):
    """The noise added at each of STEPS steps (``w_t - w_{t+1}`` with lr 1 and zero gradients)."""
    optimizer = TransformedOptimizer(keras.optimizers.SGD(1.0), [GradientNoise(ETA, GAMMA, seed=seed)])
    variables = [keras.Variable(np.zeros(s, "float32")) for s in SHAPES]
    optimizer.build(variables)
    zeros = [keras.ops.zeros(s, "float32") for s in SHAPES]
    if keras.backend.backend() == "jax":
        import jax

        apply = jax.jit(optimizer.stateless_apply)
        slots, weights = [v.value for v in optimizer.variables], [v.value for v in variables]
    draws = []
    for _ in range(STEPS):
        before = [np.asarray(keras.ops.convert_to_numpy(v), "float64") for v in variables]
        if keras.backend.backend() == "jax":
            weights, slots = apply(slots, zeros, weights)
            for variable, value in zip(variables, weights):
                variable.assign(value)
        else:
            optimizer.apply(zeros, variables)
        after = [np.asarray(keras.ops.convert_to_numpy(v), "float64") for v in variables]
        draws.append([(b - a).ravel() for b, a in zip(before, after)])
    return draws


def test_noise_is_gaussian_with_scheduled_std_and_fresh_every_step():
    previous = None
    for t, (big, small) in enumerate(_noise_per_step()):
        previous = assert_step_noise(t, big, small, previous)
        # Each gradient tensor gets its own draw: the (7,) tensor is not a copy of the big one's start.
        assert not np.allclose(small, big[:7])


def test_seeded_runs_repeat_and_seeds_differ():
    first, again, other = _noise_per_step(4), _noise_per_step(4), _noise_per_step(5)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert not np.allclose(first[0][0], other[0][0])
