"""``SAMModel.train_step`` on the JAX and PyTorch backends.

The same step as the TensorFlow one in ``sam.py``: the loss and gradient at
``w``, the ascent ``e(w)`` from the compiled ``SAM`` optimizer, the gradient
at ``w + e`` (the weights are never modified; the second pass reads the
non-trainable state, e.g. BatchNorm statistics and random-seed states, as the
first pass did, and what it writes is discarded), and the SAM
optimizer applies that gradient with its inner optimizer. Loss and metrics
are those of the first pass. Each follows its backend's own
``Trainer.train_step`` (``keras/src/backend/{jax,torch}/trainer.py``, Keras
3.15), through public methods and ``_compat.keras.loss_tracker``.
"""

from __future__ import annotations

import keras

from keras_trainkit._compat.keras import loss_tracker


def state_before(state_variables) -> list:
    """``(variable, value)`` pairs of ``state_variables`` as they are now: what SAM's second
    pass reads them as, on every backend (``sam.sam_gradients``, ``SAMModel``)."""
    return [(variable, keras.ops.copy(keras.ops.convert_to_tensor(variable))) for variable in state_variables]


def _batch_size(x):
    return next(i for i in keras.tree.flatten(x) if i is not None).shape[0]


def jax_train_step(model, sam, state, data):
    """One SAM step in Keras's stateless JAX form: ``(logs, new state)``."""
    import jax

    trainable, non_trainable, optimizer_variables, metrics_variables = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    grad_fn = jax.value_and_grad(model.compute_loss_and_updates, has_aux=True)

    def gradients(weights):
        return grad_fn(weights, non_trainable, metrics_variables, x, y, sample_weight,
                       training=True, optimizer_variables=optimizer_variables)

    (_, (loss, y_pred, new_non_trainable, metrics_variables)), grads = gradients(trainable)
    perturbation = sam.perturbation(grads, trainable)
    _, perturbed_grads = gradients([w + e for w, e in zip(trainable, perturbation)])
    trainable, optimizer_variables = model.optimizer.stateless_apply(optimizer_variables, perturbed_grads, trainable)

    mapping = list(zip(model.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        loss_tracker(model).update_state(loss, sample_weight=_batch_size(x))
        logs = model.compute_metrics(x, y, y_pred, sample_weight)
    metrics_variables = [
        value if (value := scope.get_current_value(v)) is not None else v.value for v in model.metrics_variables
    ]
    return logs, (trainable, new_non_trainable, optimizer_variables, metrics_variables)


def torch_train_step(model, sam, data):
    """One SAM step with PyTorch autograd: the logs."""
    import torch

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = list(model.trainable_variables)
    state = state_before(model.non_trainable_variables)  # as the second pass reads them

    def scaled_loss(y_pred):
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        return loss, model.optimizer.scale_loss(loss)

    y_pred = model(x, training=True)
    loss, scaled = scaled_loss(y_pred)
    loss_tracker(model).update_state(loss, sample_weight=_batch_size(x))
    grads = list(torch.autograd.grad(scaled, [v.value for v in variables], allow_unused=True))
    with torch.no_grad():
        perturbation = sam.perturbation(grads, variables)
    points = [
        None if e is None else (v.value + e).detach().requires_grad_(True) for v, e in zip(variables, perturbation)
    ]
    mapping = [(v, p) for v, p in zip(variables, points) if p is not None] + state
    with keras.StatelessScope(state_mapping=mapping):
        _, second = scaled_loss(model(x, training=True))
    present = [p for p in points if p is not None]
    perturbed = iter(torch.autograd.grad(second, present, allow_unused=True))
    perturbed_grads = [None if p is None else next(perturbed) for p in points]
    with torch.no_grad():
        model.optimizer.apply(perturbed_grads, variables)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
