"""The compiled training step of ``optimizer_step.py`` on each Keras backend.

``build_step(model, optimizer, x, y, sam, jit)`` returns ``run(steps) -> loss``:
``steps`` training steps (forward, backward, ``apply_gradients``) in one call,
ending with the last loss read back to the host (a device sync). The model and
optimizer state carries over from call to call, as in training.

* TensorFlow: the steps in a ``tf.while_loop`` inside one ``tf.function``
  (XLA with ``jit=True``).
* JAX: ``jax.value_and_grad`` of ``model.stateless_call`` and
  ``optimizer.stateless_apply`` in a ``jax.lax.fori_loop`` under ``jax.jit``,
  always (what ``model.fit`` does by default on JAX, ``jit_compile=True``).
* PyTorch: an eager loop, ``torch.autograd.grad`` then ``optimizer.apply``
  under ``torch.no_grad()`` (what ``model.fit`` does by default on PyTorch).

``SAM`` takes its two passes: the gradient at ``w``, the ascent
``e = SAM.perturbation(g, w)``, the gradient at ``w + e``, applied by the SAM
optimizer (the TensorFlow path through ``SAM.compute_gradients``).
"""

from __future__ import annotations

import keras


def build_step(model, optimizer, x, y, sam: bool, jit: bool):
    """``run(steps) -> float``: ``steps`` training steps in one call, the last loss synced."""
    variables = model.trainable_variables
    optimizer.build(variables)
    loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(model, optimizer, x, y, sam, jit, loss_object)
    if backend == "jax":
        return _jax(model, optimizer, x, y, sam, loss_object)
    if backend == "torch":
        return _torch(model, optimizer, x, y, sam, loss_object)
    raise ValueError(f"Unsupported Keras backend. Received: backend={backend!r}")


def _tensorflow(model, optimizer, x, y, sam, jit, loss_object):
    import tensorflow as tf

    variables = model.trainable_variables
    x, y = tf.constant(x), tf.constant(y)

    def loss_fn():
        return loss_object(y, model(x, training=True))

    def one_step():
        if sam:
            loss, grads = optimizer.compute_gradients(loss_fn, variables)
        else:
            with tf.GradientTape() as tape:
                loss = loss_fn()
            grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    @tf.function(jit_compile=jit)
    def steps_fn(steps):
        loss = tf.constant(0.0)
        for _ in tf.range(steps):
            loss = one_step()
        return loss

    return lambda steps: float(steps_fn(tf.constant(steps)).numpy())


def _jax(model, optimizer, x, y, sam, loss_object):
    import jax
    import jax.numpy as jnp

    non_trainable = [v.value for v in model.non_trainable_variables]
    x, y = jnp.asarray(x), jnp.asarray(y)

    def loss_at(weights):
        prediction, _ = model.stateless_call(weights, non_trainable, x, training=True)
        return loss_object(y, prediction)

    grad_fn = jax.value_and_grad(loss_at)

    def one_step(_, carry):
        _, weights, slots = carry
        loss, grads = grad_fn(weights)
        if sam:
            ascent = optimizer.perturbation(grads, weights)
            _, grads = grad_fn([w + e for w, e in zip(weights, ascent)])
        weights, slots = optimizer.stateless_apply(slots, grads, weights)
        return loss, list(weights), list(slots)

    @jax.jit
    def steps_fn(steps, weights, slots):
        return jax.lax.fori_loop(0, steps, one_step, (jnp.zeros(()), weights, slots))

    state = {"weights": [v.value for v in model.trainable_variables],
             "slots": [v.value for v in optimizer.variables]}

    def run(steps):
        loss, state["weights"], state["slots"] = steps_fn(steps, state["weights"], state["slots"])
        return float(loss)

    return run


def _torch(model, optimizer, x, y, sam, loss_object):
    import torch

    variables = model.trainable_variables
    x, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)

    def loss_and_grads():
        loss = loss_object(y, model(x, training=True))
        return loss, list(torch.autograd.grad(loss, [v.value for v in variables]))

    def sam_grads(grads):
        with torch.no_grad():
            ascent = optimizer.perturbation(grads, variables)
        points = [(v.value + e).detach().requires_grad_(True) for v, e in zip(variables, ascent)]
        with keras.StatelessScope(state_mapping=list(zip(variables, points))):
            second = loss_object(y, model(x, training=True))
        return list(torch.autograd.grad(second, points))

    def run(steps):
        loss = None
        for _ in range(steps):
            loss, grads = loss_and_grads()
            if sam:
                grads = sam_grads(grads)
            with torch.no_grad():
                optimizer.apply(grads, variables)
        return float(loss.detach())

    return run

