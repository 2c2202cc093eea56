"""Drivers for references in PyTorch (pytorch-optimizer), float16, N-D shapes and sparse gradients.

Complements ``reference_problems`` (same problems, same ``kernel``/``bias``
split): ``run_torch`` applies a ``torch.optim.Optimizer`` built by a factory to
parameters in the problem's dtype, computing each gradient with numpy from the
torch side's own current parameters, so a difference in the update rule
compounds over the steps. ``as_float16`` gives the float16 version of a
problem. ``run_keras_sparse`` runs one of our optimizers with the gradient of
a variable handed over as ``tf.IndexedSlices`` with repeated and absent rows.
``ShapedQuadratic`` and the ``run_*_shaped`` drivers do the same for
variables of any shapes (a 4-D convolution kernel, a kernel cut into blocks).
"""

from __future__ import annotations

import keras
import numpy as np

from tests.optimizers import reference_problems as rp


def as_float16(problem: rp.Problem) -> rp.Problem:
    """The same problem with float16 parameters and coefficients."""

    def cast(value):
        return None if value is None else value.astype(np.float16)

    return rp.Problem(problem.name, cast(problem.x0), problem.kind, cast(problem.a), cast(problem.b))


def run_torch(make_optimizer, problem: rp.Problem, steps: int = rp.STEPS, shapes=None) -> np.ndarray:
    """Apply ``make_optimizer(params)`` (a list of torch tensors) for ``steps`` updates.

    ``shapes`` optionally overrides the torch parameter shapes (e.g. a 4-D
    kernel seen as a matrix); each is reshaped back to the problem's layout
    for the gradient and the trajectory. Rows of the result are the flat
    parameters after each step.
    """
    import torch

    init = problem.init
    shapes = shapes or {k: rp.SHAPES[k] for k in rp.NAMES}
    params = [
        torch.nn.Parameter(torch.from_numpy(np.array(init[k]).reshape(shapes[k]).copy()))
        for k in rp.NAMES
    ]
    optimizer = make_optimizer(params)
    dtype = problem.x0.dtype
    rows = []
    for _ in range(steps):
        current = {k: p.detach().numpy().reshape(rp.SHAPES[k]) for k, p in zip(rp.NAMES, params)}
        grads = rp.split(problem.grad(rp.flatten(current, np).astype(dtype), np).astype(dtype), np)
        for k, p in zip(rp.NAMES, params):
            p.grad = torch.from_numpy(np.ascontiguousarray(grads[k]).reshape(shapes[k]).copy())
        optimizer.step()
        rows.append(rp.flatten({k: p.detach().numpy().reshape(rp.SHAPES[k]) for k, p in zip(rp.NAMES, params)}, np))
    return np.stack(rows)


def run_keras_sparse(optimizer, problem: rp.Problem, steps: int = rp.STEPS) -> np.ndarray:
    """Like ``rp.run_keras``, the ``kernel`` gradient given as ``tf.IndexedSlices``.

    The 3 x 3 kernel's gradient rows go in as slices ``[0, 0, 2]``: row 0 split
    in two halves (a repeated row, to be summed), row 1 absent (its gradient
    is zero), row 2 once. The dense equivalent is the kernel gradient with row 1
    zeroed, so compare with ``run_keras_masked``.
    """
    import tensorflow as tf

    init = problem.init
    variables = [keras.Variable(init[k], name=k) for k in rp.NAMES]
    optimizer.build(variables)

    @tf.function
    def run():
        rows = tf.TensorArray(problem.x0.dtype, size=steps)
        for i in tf.range(steps):
            x = rp.flatten({k: v.value for k, v in zip(rp.NAMES, variables)}, tf.experimental.numpy)
            grads = rp.split(problem.grad(x, tf.experimental.numpy), tf.experimental.numpy)
            kernel = grads["kernel"]
            values = tf.stack([0.5 * kernel[0], 0.5 * kernel[0], kernel[2]])
            sparse = tf.IndexedSlices(values, tf.constant([0, 0, 2]), dense_shape=tf.constant(rp.SHAPES["kernel"]))
            optimizer.apply([sparse, grads["bias"]], variables)
            rows = rows.write(i, rp.flatten({k: v.value for k, v in zip(rp.NAMES, variables)}, tf.experimental.numpy))
        return rows.stack()

    return run().numpy()


def run_keras_masked(optimizer, problem: rp.Problem, steps: int = rp.STEPS) -> np.ndarray:
    """The dense counterpart of ``run_keras_sparse``: kernel row 1's gradient set to zero."""
    import tensorflow as tf

    init = problem.init
    variables = [keras.Variable(init[k], name=k) for k in rp.NAMES]
    optimizer.build(variables)
    row_mask = tf.constant([[1.0], [0.0], [1.0]], dtype=problem.x0.dtype)

    @tf.function
    def run():
        rows = tf.TensorArray(problem.x0.dtype, size=steps)
        for i in tf.range(steps):
            x = rp.flatten({k: v.value for k, v in zip(rp.NAMES, variables)}, tf.experimental.numpy)
            grads = rp.split(problem.grad(x, tf.experimental.numpy), tf.experimental.numpy)
            optimizer.apply([grads["kernel"] * row_mask, grads["bias"]], variables)
            rows = rows.write(i, rp.flatten({k: v.value for k, v in zip(rp.NAMES, variables)}, tf.experimental.numpy))
        return rows.stack()

    return run().numpy()


class ShapedQuadratic:
    """``f(x) = 0.5 x^T A x - b^T x`` over variables of any shapes (e.g. a 4-D kernel and a bias).

    ``A`` has eigenvalues log-spaced over ``[1e-2, 1e2]`` in a random basis, as
    ``reference_problems.quadratic``. ``shapes`` maps variable names to shapes.
    """

    def __init__(self, shapes: dict, seed: int = 0, dtype="float32"):
        self.shapes = dict(shapes)
        size = sum(int(np.prod(s)) for s in self.shapes.values())
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(size, size)))
        self.a = ((q * np.logspace(-2, 2, size)) @ q.T).astype(dtype)
        self.b = rng.normal(size=size).astype(dtype)
        self.x0 = rng.normal(size=size).astype(dtype)

    def split(self, flat, xp):
        out, start = {}, 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape))
            out[name] = xp.reshape(flat[start : start + size], shape)
            start += size
        return out

    def flatten(self, params, xp):
        return xp.concatenate([xp.reshape(params[name], (-1,)) for name in self.shapes])

    def grad(self, x, xp):
        return xp.matmul(xp.asarray(self.a), x) - xp.asarray(self.b)


def run_keras_shaped(optimizer, problem: ShapedQuadratic, steps: int = rp.STEPS) -> np.ndarray:
    """``rp.run_keras`` for a :class:`ShapedQuadratic` (any backend)."""
    names = list(problem.shapes)

    def grads_of(params, xp):
        grads = problem.split(problem.grad(problem.flatten(params, xp), xp), xp)
        return [grads[name] for name in names]

    return rp.run_keras_loop(optimizer, problem.split(problem.x0, np), grads_of, problem.flatten,
                             problem.x0.dtype, steps)


def run_optax_shaped(transform, problem: ShapedQuadratic, steps: int = rp.STEPS) -> np.ndarray:
    """``rp.run_optax`` for a :class:`ShapedQuadratic`."""
    import jax
    import jax.numpy as jnp
    import optax

    params = {name: jnp.asarray(v) for name, v in problem.split(problem.x0, np).items()}
    state = transform.init(params)

    def step(carry, _):
        params, state = carry
        grads = problem.split(problem.grad(problem.flatten(params, jnp), jnp), jnp)
        updates, state = transform.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), problem.flatten(params, jnp)

    _, rows = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), None, length=steps))(params, state)
    return np.asarray(rows)


def run_torch_shaped(make_optimizer, problem: ShapedQuadratic, to_torch, from_torch, steps: int = rp.STEPS):
    """Drive a torch optimizer on parameters ``to_torch(params) -> list of arrays``.

    ``from_torch(list of arrays) -> params`` maps back (e.g. blocks of a kernel
    as separate torch parameters, or an N-D kernel as its matrix view).
    """
    import torch

    tensors = [torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(a).copy()))
               for a in to_torch(problem.split(problem.x0, np))]
    optimizer = make_optimizer(tensors)
    rows = []
    for _ in range(steps):
        params = from_torch([t.detach().numpy() for t in tensors])
        grads = to_torch(problem.split(problem.grad(problem.flatten(params, np), np).astype(problem.x0.dtype), np))
        for tensor, grad in zip(tensors, grads):
            tensor.grad = torch.from_numpy(np.ascontiguousarray(grad).copy())
        optimizer.step()
        rows.append(problem.flatten(from_torch([t.detach().numpy() for t in tensors]), np))
    return np.stack(rows)
