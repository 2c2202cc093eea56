"""Gradients on every Keras backend: of a scalar with respect to Keras variables, and
with respect to a model's inputs inside a training step (double backpropagation).

Keras 3 has no backend-neutral ``grad``; each backend differentiates its own
way. This module is the one place that chooses, through each framework's public
API. :func:`value_and_gradients` (first-order, with respect to variables):

* TensorFlow: ``tf.GradientTape`` (a ``tf.IndexedSlices`` gradient, of a
  gather, summed per index into a dense tensor, like the other backends' own);
* JAX: ``jax.value_and_grad``;
* PyTorch: ``torch.autograd.grad``.

On each, the function runs with the variables read through a
``keras.StatelessScope`` (what ``model.stateless_call`` does) as fresh tensors
the backend differentiates with respect to, so any Keras code (a model call, a
loss) can be differentiated without rewriting it as a pure function.

A variable the value does not depend on gets a zero gradient on every backend.

:func:`input_pullback` (with respect to the inputs, kept differentiable with
respect to the weights, for penalties such as ``||d f(x) / d x||^2`` inside
``model.fit``'s or the ``Trainer``'s own differentiation; Drucker & LeCun 1992):

* TensorFlow: a persistent inner ``tf.GradientTape`` that watches the inputs, run
  inside the caller's tape;
* JAX: ``jax.vjp`` of a pure forward pass, ``model.stateless_call`` on the
  current (traced) weights, so ``jax.grad`` of the training step differentiates
  through it; the forward pass's state updates (BatchNorm statistics, dropout
  seeds) come back as ``jax.vjp``'s auxiliary output and are assigned in the
  caller's ``StatelessScope``, never leaked as tracers;
* PyTorch: ``torch.autograd.grad(..., create_graph=True)`` on inputs that
  require gradients, under ``torch.enable_grad()`` so that it also runs in
  ``evaluate`` (which Keras runs under ``torch.no_grad()``).
"""

from __future__ import annotations

import keras
from keras import ops


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
    return {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch}[_differentiating_backend()](fn, variables)


def _differentiating_backend():
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax", "torch"):
        raise ValueError("Gradients need the TensorFlow, JAX or PyTorch backend. "
                         f"Received: backend={backend!r}")
    return backend


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
    return value, aux, [_dense(g, v) for g, v in zip(grads, variables)]


def _dense(gradient, variable):
    """A ``tf.IndexedSlices`` gradient (of a gather: ``Embedding``, ``ops.take``) as a dense tensor.

    ``d[i] = sum of values[j] where indices[j] == i`` (zero where ``i`` is
    absent), of the variable's shape, as ``tf.convert_to_tensor`` sums the
    slices: the slices hold one row per look-up, so an index looked up twice
    has two rows, and squaring or storing them before that sum gives wrong
    numbers (``0.1**2 + 0.1**2 != 0.2**2``); ``np.asarray`` of the slices is a
    0-d object array.
    """
    import tensorflow as tf

    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    rows = variable.shape[0] if variable.shape[0] is not None else gradient.dense_shape[0]
    return tf.math.unsorted_segment_sum(gradient.values, gradient.indices, rows)


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


def _float_input_leaves(x):
    """The leaves of the input structure ``x`` as tensors, integer ones cast to floatx."""
    leaves = [ops.convert_to_tensor(leaf) for leaf in keras.tree.flatten(x)]
    return [leaf if keras.backend.is_float_dtype(leaf.dtype) else ops.cast(leaf, keras.backend.floatx())
            for leaf in leaves]


def _pack(x, leaves):
    return keras.tree.pack_sequence_as(x, leaves) if keras.tree.is_nested(x) else leaves[0]


def input_pullback(model, x, head, training=True):
    """Evaluate ``value = head(model(x, training=training))``; return ``(value, pullback)``.

    Integer leaves of ``x`` are cast to ``keras.backend.floatx()`` first (the
    inputs the gradient is taken with respect to must be real-valued).
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
    pullbacks = {"tensorflow": _tensorflow_pullback, "jax": _jax_pullback, "torch": _torch_pullback}
    return pullbacks[_differentiating_backend()](model, x, _float_input_leaves(x), head, training)


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
