"""Gradients with respect to a model's inputs that stay differentiable with respect to its weights.

A model-level penalty such as ``||d f(x) / d x||^2`` needs, inside the training
step's own differentiation with respect to the weights, a second one with respect
to the inputs (double backpropagation, Drucker & LeCun 1992). Each Keras backend
spells that differently; :func:`input_pullback` is the one place that does:

* TensorFlow: a persistent inner ``tf.GradientTape`` that watches the inputs, run
  inside the caller's tape (``model.fit``'s or the ``Trainer``'s);
* JAX: ``jax.vjp`` of a pure forward pass, ``model.stateless_call`` on the
  current (traced) weights, so ``jax.grad`` of the training step differentiates
  through it; the forward pass's state updates (BatchNorm statistics, dropout
  seeds) come back as ``jax.vjp``'s auxiliary output and are assigned in the
  caller's ``StatelessScope``, never leaked as tracers;
* PyTorch: ``torch.autograd.grad(..., create_graph=True)`` on inputs that
  require gradients, under ``torch.enable_grad()`` so that it also runs in
  ``evaluate`` (which Keras runs under ``torch.no_grad()``).

For a function ``value = head(model(x))`` the *pullback* of a cotangent ``u`` of
the same shape as ``value`` is the vector-Jacobian product

    pullback(u) = [ d <u, value> / d x_k  for every float leaf x_k of x ]

(``u^T J``). Integer leaves are cast to ``keras.backend.floatx()`` first, as the
inputs the gradient is taken with respect to must be real-valued.
"""

from __future__ import annotations

import keras
from keras import ops


def float_input_leaves(x):
    """The leaves of the input structure ``x`` as tensors, integer ones cast to floatx."""
    leaves = [ops.convert_to_tensor(leaf) for leaf in keras.tree.flatten(x)]
    return [leaf if keras.backend.is_float_dtype(leaf.dtype) else ops.cast(leaf, keras.backend.floatx())
            for leaf in leaves]


def _pack(x, leaves):
    return keras.tree.pack_sequence_as(x, leaves) if keras.tree.is_nested(x) else leaves[0]


def input_pullback(model, x, head, training=True):
    """Evaluate ``value = head(model(x, training=training))``; return ``(value, pullback)``.

    ``pullback(cotangent)`` returns the list of ``d <cotangent, value> / d x_k``
    over the float leaves of ``x`` (``None`` for a leaf the value does not depend
    on). It may be called several times (one per random projection, say). Both
    ``value`` and the returned gradients are differentiable with respect to the
    model's weights by the caller's own gradient (``model.fit``'s training step,
    the ``Trainer``'s tape).

    Args:
        model: a built ``keras.Model``.
        x: the input batch (a tensor or a nested structure of tensors).
        head: a function of the model's output returning the tensor to
            differentiate (the flattened outputs, a summed loss, ...).
        training: passed to the model call.
    """
    leaves = float_input_leaves(x)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_pullback(model, x, leaves, head, training)
    if backend == "jax":
        return _jax_pullback(model, x, leaves, head, training)
    if backend == "torch":
        return _torch_pullback(model, x, leaves, head, training)
    raise RuntimeError(
        "Gradients with respect to the inputs need the TensorFlow, JAX or PyTorch backend. "
        f"Received: backend={backend!r}"
    )


def _tensorflow_pullback(model, x, leaves, head, training):
    import tensorflow as tf

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(leaves)
        value = head(model(_pack(x, leaves), training=training))

    def pullback(cotangent):
        return tape.gradient(value, leaves, output_gradients=cotangent)

    return value, pullback


def _jax_pullback(model, x, leaves, head, training):
    import jax

    # Read inside the caller's StatelessScope, these are the traced weights the
    # training step differentiates with respect to.
    trainable = [variable.value for variable in model.trainable_variables]
    non_trainable = [variable.value for variable in model.non_trainable_variables]

    def forward(input_leaves):
        outputs, updated = model.stateless_call(trainable, non_trainable, _pack(x, input_leaves),
                                                training=training)
        return head(outputs), updated

    value, vjp, updated = jax.vjp(forward, leaves, has_aux=True)
    for variable, new_value in zip(model.non_trainable_variables, updated):
        variable.assign(new_value)

    def pullback(cotangent):
        (gradients,) = vjp(ops.cast(cotangent, value.dtype))
        return list(gradients)

    return value, pullback


def _torch_pullback(model, x, leaves, head, training):
    import torch

    with torch.enable_grad():
        leaves = [leaf.detach().requires_grad_(True) for leaf in leaves]
        value = head(model(_pack(x, leaves), training=training))

    def pullback(cotangent):
        with torch.enable_grad():
            return list(torch.autograd.grad(value, leaves, grad_outputs=cotangent, create_graph=True,
                                            retain_graph=True, allow_unused=True))

    return value, pullback


__all__ = ["float_input_leaves", "input_pullback"]
