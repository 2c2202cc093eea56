"""Helpers for callbacks that reach into an optimizer: leaves, step counts, retracing.

A model's optimizer may wrap others: ``keras.optimizers.LossScaleOptimizer`` and
``keras_trainkit.optimizers.OptimizerWrapper`` hold one in ``inner_optimizer``;
``keras.optimizers.MultiOptimizer`` (a per-layer set) holds several in
``optimizers``. The hyperparameters and the learning rate live on the innermost
("leaf") optimizers, so callbacks act on those.
"""

from __future__ import annotations

import keras


def leaf_optimizers(optimizer) -> list:
    """The innermost optimizers of ``optimizer``, in order (``[optimizer]`` if it wraps none)."""
    if optimizer is None:
        return []
    children = getattr(optimizer, "optimizers", None)
    if isinstance(children, (list, tuple)) and children and all(
        isinstance(child, keras.optimizers.Optimizer) for child in children
    ):
        return [leaf for child in children for leaf in leaf_optimizers(child)]
    inner = getattr(optimizer, "inner_optimizer", None)
    if isinstance(inner, keras.optimizers.Optimizer) and inner is not optimizer:
        return leaf_optimizers(inner)
    return [optimizer]


def model_leaf_optimizers(model) -> list:
    """The leaf optimizers of ``model.optimizer``, building a per-layer set if needed.

    A ``MultiOptimizer`` given a selector function learns its inner optimizers
    only when it is built, which ``fit`` does in the first traced step; it is
    built here first (as ``fit`` itself does under a distribution strategy).
    """
    optimizer = getattr(model, "optimizer", None)
    children = getattr(optimizer, "optimizers", None)
    if (isinstance(children, (list, tuple)) and not children and not optimizer.built
            and getattr(model, "built", False)):
        strategy = getattr(model, "distribute_strategy", None)
        if strategy is not None:
            with strategy.scope():
                optimizer.build(model.trainable_variables)
        else:
            optimizer.build(model.trainable_variables)
    return leaf_optimizers(optimizer)


def update_count(optimizer) -> int:
    """The number of optimizer updates applied so far (not micro-batches).

    Keras's ``optimizer.iterations`` property already divides the micro-batch
    counter by ``gradient_accumulation_steps``.
    """
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def to_float(value) -> float:
    """A Python float from a number, array, tensor or variable."""
    return float(keras.ops.convert_to_numpy(value))


def retrace_train_function(model) -> None:
    """Drop a traced ``train_function`` so the next step traces the optimizer anew.

    ``model.fit`` builds its train function before ``on_train_begin``; a callback
    that changes what the traced graph captures (a Python float replaced by a
    variable, a schedule object swapped) calls this, and ``fit`` then uses the
    rebuilt function from its next step on.
    """
    if model is None or getattr(model, "train_function", None) is None:
        return
    model.make_train_function(force=True)
