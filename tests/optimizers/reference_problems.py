"""Test problems and drivers for checking optimizers against an independent reference.

Two problems, each split over two variables named ``kernel`` and ``bias`` (so
per-variable norms, name-pattern exclusions and cross-variable sums are
exercised):

* ``quadratic``: ``f(x) = 0.5 x^T A x - b^T x`` with ``A = Q diag(lambda) Q^T``,
  eigenvalues log-spaced over ``[1e-2, 1e2]`` (condition number 1e4), ``Q`` a
  random rotation;
* ``rosenbrock``: the chained Rosenbrock function
  ``sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` from the classic start
  ``(-1.2, 1, -1.2, 1, ...)``.

Each side computes the gradient with the same formula from its *own* current
parameters in float32 (TensorFlow ops for our Keras optimizer, ``jax.numpy``
for optax, numpy for a transcription), so a difference in the update rule
shows up and compounds over the steps. Each run is one compiled loop
(``tf.function`` / ``jax.lax.scan``) to keep the tests fast.

``relative_errors`` is normwise per step: ``max|ours - ref| / max|ref|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

NAMES = ("kernel", "bias")
SHAPES = {"kernel": (3, 3), "bias": (3,)}
STEPS = 100
RTOL = 1e-5


@dataclass
class Problem:
    """``grad(x, xp)`` maps the flat float32 parameter vector to its gradient (``xp``: an array module)."""

    name: str
    x0: np.ndarray
    kind: str
    a: np.ndarray | None = None
    b: np.ndarray | None = None

    @property
    def init(self) -> dict[str, np.ndarray]:
        return split(self.x0, np)

    def grad(self, x, xp):
        if self.kind == "quadratic":
            return xp.matmul(xp.asarray(self.a), x) - xp.asarray(self.b)
        head, tail = x[:-1], x[1:]
        inner = tail - head * head
        zero = xp.zeros((1,), dtype=x.dtype)
        left = xp.concatenate([-400.0 * head * inner - 2.0 * (1.0 - head), zero])
        right = xp.concatenate([zero, 200.0 * inner])
        return left + right


def as_float64(problem: Problem) -> Problem:
    """The same problem in float64 (for references whose float32 rounding is chaotic)."""
    def cast(value):
        return None if value is None else value.astype(np.float64)

    return Problem(problem.name, cast(problem.x0), problem.kind, cast(problem.a), cast(problem.b))


def split(flat, xp) -> dict:
    return {"kernel": xp.reshape(flat[:9], SHAPES["kernel"]), "bias": flat[9:]}


def flatten(params, xp):
    return xp.concatenate([xp.reshape(params[k], (-1,)) for k in NAMES])


def quadratic(seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    a = ((q * np.logspace(-2, 2, 12)) @ q.T).astype(np.float32)
    b = rng.normal(size=12).astype(np.float32)
    return Problem("quadratic", rng.normal(size=12).astype(np.float32), "quadratic", a, b)


def rosenbrock() -> Problem:
    return Problem("rosenbrock", np.tile([-1.2, 1.0], 6).astype(np.float32), "rosenbrock")


PROBLEMS = {"quadratic": quadratic, "rosenbrock": rosenbrock}


class KerasNumpy:
    """The array functions ``Problem.grad``, ``split`` and ``flatten`` use, from ``keras.ops`` (any backend)."""

    matmul = staticmethod(keras.ops.matmul)
    concatenate = staticmethod(keras.ops.concatenate)
    reshape = staticmethod(keras.ops.reshape)
    asarray = staticmethod(keras.ops.convert_to_tensor)

    @staticmethod
    def zeros(shape, dtype=None):
        return keras.ops.zeros(shape, dtype=keras.backend.standardize_dtype(dtype))


def run_keras(optimizer, problem: Problem, steps: int = STEPS) -> np.ndarray:
    """Apply ``optimizer`` for ``steps`` updates; the trajectory, one row per step.

    On each backend the way its ``model.fit`` runs: TensorFlow, one
    ``tf.function`` loop of ``optimizer.apply``; JAX, ``optimizer.stateless_apply``
    in a ``jax.lax.scan`` under ``jax.jit``; PyTorch, an eager loop.
    """
    def grads_of(params, xp):
        grads = split(problem.grad(flatten(params, xp), xp), xp)
        return [grads[k] for k in NAMES]

    return run_keras_loop(optimizer, problem.init, grads_of, flatten, problem.x0.dtype, steps)


def run_keras_loop(optimizer, init: dict, grads_of, flatten_of, dtype, steps: int = STEPS) -> np.ndarray:
    """The driver of :func:`run_keras` for any parameter layout.

    ``init`` maps names to initial arrays (the variables, in this order);
    ``grads_of(params, xp)`` gives the gradients (a list in that order) of a
    ``{name: value}`` dict with the array module ``xp``; ``flatten_of(params,
    xp)`` the row recorded after each step.
    """
    if np.dtype(dtype) == np.float64 and keras.backend.result_type("float64", "float64") != "float64":
        import pytest

        # Keras 3.15 promotes every 64-bit result to 32 bits off TensorFlow (to match JAX's
        # default), so a float64 reference cannot be met at float64 tolerance there.
        pytest.skip(f"float64: Keras computes it in float32 on the {keras.backend.backend()} backend")
    names = list(init)
    variables = [keras.Variable(init[k], name=k) for k in names]
    optimizer.build(variables)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _run_tensorflow(optimizer, variables, names, grads_of, flatten_of, dtype, steps)
    if backend == "jax":
        return _run_jax(optimizer, variables, names, grads_of, flatten_of, dtype, steps)
    rows = []
    for _ in range(steps):
        optimizer.apply(grads_of({k: v.value for k, v in zip(names, variables)}, KerasNumpy), variables)
        rows.append(keras.ops.convert_to_numpy(flatten_of({k: v.value for k, v in zip(names, variables)},
                                                          KerasNumpy)))
    return np.stack(rows)


def _run_tensorflow(optimizer, variables, names, grads_of, flatten_of, dtype, steps):
    import tensorflow as tf

    tnp = tf.experimental.numpy

    @tf.function
    def run():
        rows = tf.TensorArray(dtype, size=steps)
        for i in tf.range(steps):
            optimizer.apply(grads_of({k: v.value for k, v in zip(names, variables)}, tnp), variables)
            rows = rows.write(i, flatten_of({k: v.value for k, v in zip(names, variables)}, tnp))
        return rows.stack()

    return run().numpy()


def _run_jax(optimizer, variables, names, grads_of, flatten_of, dtype, steps):
    import jax
    import jax.numpy as jnp

    def step(carry, _):
        params, state = carry
        params, state = optimizer.stateless_apply(state, grads_of(dict(zip(names, params)), jnp), params)
        return (list(params), list(state)), flatten_of(dict(zip(names, params)), jnp)

    carry = ([v.value for v in variables], [v.value for v in optimizer.variables])
    _, rows = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(carry)
    return np.asarray(rows)


def run_optax(transform, problem: Problem, steps: int = STEPS, edit_state=None) -> np.ndarray:
    """Apply an optax transformation the same way; ``edit_state`` may adjust its initial state."""
    import jax
    import jax.numpy as jnp
    import optax

    params = {k: jnp.asarray(v) for k, v in problem.init.items()}
    state = transform.init(params)
    if edit_state is not None:
        state = edit_state(state)

    def step(carry, _):
        params, state = carry
        grads = split(problem.grad(flatten(params, jnp), jnp), jnp)
        updates, state = transform.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), flatten(params, jnp)

    _, rows = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), None, length=steps))(params, state)
    return np.asarray(rows)


def run_numpy(step_fn, problem: Problem, steps: int = STEPS) -> np.ndarray:
    """Drive a numpy transcription ``step_fn(params, grads, t) -> params`` (``t`` from 1)."""
    params = problem.init
    rows = []
    for t in range(1, steps + 1):
        grads = split(problem.grad(flatten(params, np), np), np)
        params = {k: np.asarray(v, dtype=problem.x0.dtype) for k, v in step_fn(params, grads, t).items()}
        rows.append(flatten(params, np))
    return np.stack(rows)


def relative_errors(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Normwise relative error per step: ``max|ours - ref| / max|ref|``."""
    scale = np.maximum(np.abs(reference).max(axis=1), 1e-12)
    return np.abs(ours - reference).max(axis=1) / scale


def assert_matches(ours: np.ndarray, reference: np.ndarray, rtol: float = RTOL) -> None:
    """Every step within ``rtol`` (normwise) of the reference."""
    assert ours.shape == reference.shape
    assert np.all(np.isfinite(reference)), "the reference diverged; pick a smaller step"
    errors = relative_errors(ours, reference)
    worst = int(np.argmax(errors))
    assert errors[worst] <= rtol, f"step {worst + 1}: relative error {errors[worst]:.3g} > {rtol}"


def assert_moved(trajectory: np.ndarray, problem: Problem, minimum: float = 1e-2) -> None:
    """The run must actually move the parameters, or matching proves nothing."""
    assert np.abs(trajectory[-1] - problem.x0).max() > minimum


def assert_differs(a: np.ndarray, b: np.ndarray, minimum: float = 1e-4) -> None:
    """Two configurations give measurably different trajectories (so a test can tell them apart)."""
    assert relative_errors(a, b).max() > minimum


MASK = {"kernel": True, "bias": False}
"""Optax mask matching ``exclude_from_weight_decay=["bias"]``."""


def optax_chain(scale, learning_rate, weight_decay=None, mask=None):
    """``scale -> add_decayed_weights(weight_decay, mask) -> scale_by_learning_rate``.

    This is the decoupled, learning-rate-scaled weight decay of Keras/AdamW:
    ``w <- w - lr * (update + weight_decay * w)``.
    """
    import optax

    parts = [scale]
    if weight_decay is not None:
        parts.append(optax.add_decayed_weights(weight_decay, mask))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)
