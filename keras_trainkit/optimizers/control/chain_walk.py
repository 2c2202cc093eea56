"""Walking an optimizer's wrappers to its leaf optimizers; update counts; retracing."""

from __future__ import annotations

import contextlib
import weakref

import keras


def wrapper_chain(optimizer) -> list:
    """``[optimizer, its inner optimizer, that one's inner, ...]`` along ``inner_optimizer``."""
    chain = []
    while isinstance(optimizer, keras.optimizers.Optimizer) and optimizer not in chain:
        chain.append(optimizer)
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return chain


def _children(optimizer) -> list | None:
    """The optimizers of a per-variable set (Keras's ``MultiOptimizer``), else ``None``."""
    children = getattr(optimizer, "optimizers", None)
    if isinstance(children, (list, tuple)) and all(
        isinstance(child, keras.optimizers.Optimizer) for child in children
    ):
        return list(children)
    return None


def leaf_optimizers(optimizer) -> list:
    """The innermost optimizers of ``optimizer``, in order (``[optimizer]`` if it wraps none)."""
    if optimizer is None:
        return []
    innermost = wrapper_chain(optimizer)[-1]
    children = _children(innermost)
    if children:
        return [leaf for child in children for leaf in leaf_optimizers(child)]
    return [innermost]


def model_leaf_optimizers(model) -> list:
    """The leaf optimizers of ``model.optimizer``, building a per-variable set first if needed.

    A ``MultiOptimizer`` given a selector function learns its inner optimizers
    only when it is built, which ``fit`` does in the first traced step; it is
    built here first (as ``fit`` itself does under a distribution strategy).
    """
    optimizer = getattr(model, "optimizer", None)
    innermost = wrapper_chain(optimizer)[-1] if optimizer is not None else None
    if (_children(innermost) == [] and not innermost.built and getattr(model, "built", False)):
        with _scope(model):
            innermost.build(model.trainable_variables)
    return leaf_optimizers(optimizer)


def build_optimizer(model) -> None:
    """Build ``model.optimizer`` for the model's trainable variables now, if both exist and it is not.

    ``model.fit`` builds the optimizer inside its first traced step; a
    callback that must see the optimizer's slots (to copy them) builds it
    first, in the model's distribution scope, as ``fit`` itself does under a
    strategy.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or optimizer.built or not getattr(model, "built", False):
        return
    with _scope(model):
        optimizer.build(model.trainable_variables)


def find_optimizer(optimizer, predicate):
    """The first optimizer in ``optimizer``'s wrapper chain for which ``predicate`` holds, or ``None``."""
    for candidate in wrapper_chain(optimizer):
        if predicate(candidate):
            return candidate
    return None


def update_count(optimizer) -> int:
    """The number of optimizer updates applied so far (not micro-batches).

    Keras's ``optimizer.iterations`` already divides the micro-batch counter
    by ``gradient_accumulation_steps``.
    """
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def _scope(model):
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


_RETRACE_REQUESTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def retrace(model) -> None:
    """Make the next training step of ``model`` trace the optimizer anew.

    ``model.fit`` creates its train function before ``on_train_begin``; a
    change that a traced step cannot see (a float replaced by a variable, a
    schedule or optimizer swapped) needs a new trace. This rebuilds Keras's
    ``train_function`` when one exists, and counts a request that the
    ``Trainer`` checks before each ``fit`` (:func:`retrace_requests`).
    """
    if model is None:
        return
    _RETRACE_REQUESTS[model] = _RETRACE_REQUESTS.get(model, 0) + 1
    if getattr(model, "train_function", None) is not None and hasattr(model, "make_train_function"):
        model.make_train_function(force=True)


def step_freezes_assigned_values(model) -> bool:
    """Whether ``model``'s compiled step reads an assigned variable outside its state only once.

    TensorFlow and PyTorch read every variable at run time. Keras's JAX
    trainer carries only the model's, optimizer's and metrics' variables
    through its jitted step; any other variable the step reads (a
    ``HyperparameterVariable``, a ``ScaledSchedule``'s scale, a held learning
    rate) is read when the step is traced and frozen into it, so assigning it
    reaches the step only after a :func:`retrace`.
    """
    return keras.backend.backend() == "jax" and bool(getattr(model, "jit_compile", False))


def assigned_outside_state(model) -> None:
    """After assigning a variable that the step reads but does not carry in its state: :func:`retrace`
    where the step froze its value (JAX with XLA, see :func:`step_freezes_assigned_values`)."""
    if step_freezes_assigned_values(model):
        retrace(model)


def retrace_requests(model) -> int:
    """How many times :func:`retrace` was asked for ``model`` (for loops that cache a trace)."""
    return _RETRACE_REQUESTS.get(model, 0)


