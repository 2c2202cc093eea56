"""Gradients of a scalar with respect to Keras variables, on every Keras backend.

Keras 3 has no backend-neutral ``grad``; each backend differentiates its own
way. :func:`value_and_gradients` is the one place that chooses, through each
framework's public API:

* TensorFlow: ``tf.GradientTape``;
* JAX: ``jax.value_and_grad``;
* PyTorch: ``torch.autograd.grad``.

On each, the function runs with the variables read through a
``keras.StatelessScope`` (what ``model.stateless_call`` does) as fresh tensors
the backend differentiates with respect to, so any Keras code (a model call, a
loss) can be differentiated without rewriting it as a pure function.

A variable the value does not depend on gets a zero gradient on every backend.
"""

from __future__ import annotations

import keras


def value_and_gradients(fn, variables):
    """``(value, aux, gradients)`` of ``value, aux = fn()`` with respect to ``variables``.

    ``fn`` takes no argument, reads the variables as any Keras code does (a
    model call, ``keras.ops`` on them) and returns a scalar tensor and any
    auxiliary structure of tensors (e.g. intermediate outputs). Gradients come
    back in the order of ``variables``, as backend tensors of the variables'
    shapes (zeros where the value does not depend on a variable); trainable and
    non-trainable variables alike. ``fn`` runs once, with every variable read
    through a ``keras.StatelessScope``: nothing is assigned to the variables
    (a layer's state updates, e.g. BatchNormalization's moving statistics in
    training mode, are discarded).

    Args:
        fn: a callable ``() -> (scalar, aux)``.
        variables: a list of ``keras.Variable``.

    Returns:
        ``(value, aux, gradients)``.

    Example:
        >>> import keras
        >>> w = keras.Variable([1.0, 2.0])
        >>> value, _, (grad,) = value_and_gradients(lambda: (keras.ops.sum(w * w), None), [w])
        >>> keras.ops.convert_to_numpy(grad).tolist()
        [2.0, 4.0]
    """
    if not callable(fn):
        raise TypeError(f"Argument `fn` must be callable. Received: fn={fn!r}")
    variables = list(variables)
    if not all(isinstance(v, keras.Variable) for v in variables):
        raise TypeError("Argument `variables` must be a list of keras.Variable. "
                        f"Received: variables={[type(v).__name__ for v in variables]}")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(fn, variables)
    if backend == "jax":
        return _jax(fn, variables)
    if backend == "torch":
        return _torch(fn, variables)
    raise ValueError("Gradients need the TensorFlow, JAX or PyTorch backend. "
                     f"Received: backend={backend!r}")


def _scoped(fn, variables, values):
    """``fn()`` with every variable read as the matching entry of ``values``; nothing is assigned."""
    with keras.StatelessScope(state_mapping=list(zip(variables, values))):
        return fn()


def _tensorflow(fn, variables):
    import tensorflow as tf

    values = [tf.identity(v.value) for v in variables]
    with tf.GradientTape() as tape:
        tape.watch(values)
        value, aux = _scoped(fn, variables, values)
    grads = tape.gradient(value, values, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return value, aux, grads


def _jax(fn, variables):
    import jax

    def pure(values):
        return _scoped(fn, variables, values)

    (value, aux), grads = jax.value_and_grad(pure, has_aux=True)([v.value for v in variables])
    return value, aux, list(grads)


def _torch(fn, variables):
    import torch

    values = [v.value.detach().requires_grad_(True) for v in variables]
    with torch.enable_grad():
        value, aux = _scoped(fn, variables, values)
        grads = torch.autograd.grad(value, values, allow_unused=True)
    return value, aux, [torch.zeros_like(x) if g is None else g for x, g in zip(values, grads)]
