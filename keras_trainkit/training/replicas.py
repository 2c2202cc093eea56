"""Replica reduction for the Trainer under ``tf.distribute``: one global gradient, one update.

Each replica computes its loss scaled by ``1 / replicas`` (Keras 3's
per-replica loss scaling), so the *sum* of the replicas' gradients is the
gradient of the global batch's mean loss. The Trainer sums them once, in the
cross-replica context, applies its NaN policy, accumulation and transform
chain to that global gradient, and lets the optimizer update the mirrored
weights. Without a strategy (one replica) every function here is a pass-through.
"""

from __future__ import annotations

import tensorflow as tf

from keras_trainkit._compat.keras import loss_tracker


def distribute(strategy, dataset):
    """``dataset`` distributed over ``strategy``'s replicas (as it is for one device; a
    distributed dataset as it is)."""
    if isinstance(dataset, tf.distribute.DistributedDataset):
        return dataset
    if strategy.num_replicas_in_sync > 1 or tf.distribute.has_strategy():
        return strategy.experimental_distribute_dataset(dataset)
    return dataset


def all_replicas_finite(loss):
    """In a replica context: whether ``loss`` is finite on every replica (the same answer on each)."""
    finite = tf.reduce_all(tf.math.is_finite(loss))
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        bad = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(~finite, tf.float32))
        finite = tf.equal(bad, 0.0)
    return finite


def summed_gradients(strategy, replica_step, data):
    """Run ``replica_step(data) -> (finite, grads)`` on each replica; ``(finite, grads summed)``."""
    finite, grads = strategy.run(replica_step, args=(data,))
    finite = strategy.experimental_local_results(finite)[0]
    if strategy.num_replicas_in_sync > 1:
        grads = [None if g is None else strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None)
                 for g in grads]
    else:
        grads = [None if g is None else strategy.experimental_local_results(g)[0] for g in grads]
    return finite, grads


def is_loss_scaled(optimizer) -> bool:
    """Whether ``optimizer`` is a ``LossScaleOptimizer`` (``mixed_float16``)."""
    import keras

    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def _loss_scale(optimizer):
    """What ``optimizer.scale_loss`` multiplies the loss by, and ``optimizer.apply`` divides the
    gradients by again: a ``LossScaleOptimizer``'s dynamic scale (``mixed_float16``), else the
    static ``loss_scale_factor`` (``None`` when unset)."""
    return optimizer.dynamic_scale if is_loss_scaled(optimizer) else optimizer.loss_scale_factor


def unscale(optimizer, grads):
    """The gradients of ``optimizer.scale_loss(loss)`` divided by the loss scale (if any), so
    that accumulation and the gradient transforms see the loss's own gradients."""
    scale = _loss_scale(optimizer)
    if scale is None:
        return grads
    return [None if g is None else _on_values(g, lambda v: v / tf.cast(scale, v.dtype)) for g in grads]


def _on_values(g, function):
    """``function`` applied to a gradient: to a dense tensor, or to a ``tf.IndexedSlices``'s values."""
    if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(function(g.values), g.indices, g.dense_shape)
    return function(g)


def _scaled(g, factor):
    """``g * factor`` for a scalar ``factor``; a ``tf.IndexedSlices`` is scaled in its values."""
    return _on_values(g, lambda v: v * tf.cast(factor, v.dtype))


def apply_from_cross_replica(strategy, optimizer, grads, variables) -> None:
    """``optimizer.apply(grads, variables)`` for summed, unscaled ``grads``, from the cross-replica context.

    The gradients are scaled back by the loss scale (:func:`unscale` took it off):
    a ``LossScaleOptimizer`` checks them for finiteness and unscales itself, and
    ``apply`` divides by a static ``loss_scale_factor``. Keras optimizers all-reduce (sum) the
    gradients they get in a replica context, but clip them (``clipnorm``,
    ``global_clipnorm``, ``clipvalue``) before that, on each replica's own
    part: so the first replica is handed the whole summed gradient and the
    others ``g * 0`` (zero, and NaN where ``g`` is not finite, so that every
    replica takes the same finiteness decision). The sum is ``g`` and the
    clipping sees ``g``, as on one device; equal shares ``g / replicas``
    would clip each at the threshold, i.e. ``g`` at ``replicas`` times it.
    """
    scale = _loss_scale(optimizer)
    if scale is not None:
        grads = [None if g is None else _scaled(g, scale) for g in grads]
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        # Copies made here, in the graph of the update's branch: the default replica
        # context's all-reduce refuses gradients from two graphs (outer tensors next to
        # ones an optimizer made here, such as a sparse gradient made dense).
        def apply_one():
            optimizer.apply([None if g is None else tf.identity(g) for g in grads], variables)

        if tf.distribute.in_cross_replica_context():  # a fit inside a one-device strategy's scope
            strategy.extended.call_for_each_replica(apply_one)
        else:
            apply_one()
        return
    shares = strategy.experimental_distribute_values_from_function(
        lambda context: [None if g is None else _scaled(tf.identity(g), context.replica_id_in_sync_group == 0)
                         for g in grads])

    def apply(share):
        # A copy made in the replica context, on the replica's device.
        optimizer.apply([None if g is None else tf.identity(g) for g in share], variables)

    strategy.extended.call_for_each_replica(apply, args=(shares,))


def update_loss_and_metrics(model, loss, batch, x, y, y_pred, sample_weight) -> None:
    """In a replica context: add one batch to the model's loss tracker and metrics, as ``fit`` does.

    The replica's loss is scaled by ``1 / replicas``; the tracker's mean is
    kept of the unscaled loss, weighted by the replica's batch size.
    """
    tracker = loss_tracker(model)
    if tracker is not None:
        replicas_in_sync = tf.distribute.get_strategy().num_replicas_in_sync
        tracker.update_state(loss * replicas_in_sync, sample_weight=batch)
    model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
