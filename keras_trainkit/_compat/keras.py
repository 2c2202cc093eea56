"""Keras internals, and what differs between the Keras versions in the tested range.

Each function names the upstream file it leans on and the versions it was
tested with; where Keras has a public way, it is used and the private one is
only the fallback. The range is pinned in ``pyproject.toml``;
``.ci/compat_lane.sh`` tests its floor, ``.ci/run`` its top.
"""

from __future__ import annotations


def raw_learning_rate(optimizer):
    """The learning rate as ``optimizer`` stores it: a variable, a schedule or a callable.

    ``optimizer.learning_rate`` evaluates a schedule (at the micro-batch
    counter); this returns the object itself, so a caller can tell a float
    learning rate (a ``keras.Variable``) from a ``LearningRateSchedule``.

    Upstream: ``BaseOptimizer._learning_rate``
    (``keras/src/optimizers/base_optimizer.py``), Keras 3.5-3.15. No public
    twin exists.
    """
    return optimizer._learning_rate


def replace_raw_learning_rate(optimizer, value) -> None:
    """Store ``value`` (a variable, schedule or callable) as ``optimizer``'s learning rate.

    Unlike the public ``optimizer.learning_rate = schedule`` setter, this
    neither untracks the optimizer's learning-rate variable (which would
    change the layout of saved optimizer states) nor refuses a variable; it is
    for temporary replacements that are put back (the LR finder, SWA's
    annealing). Upstream: ``BaseOptimizer._learning_rate``
    (``keras/src/optimizers/base_optimizer.py``), Keras 3.5-3.15.
    """
    object.__setattr__(optimizer, "_learning_rate", value)


def micro_batch_learning_rate(optimizer):
    """What Keras itself would use as the learning rate now (its micro-batch counting).

    Upstream: ``BaseOptimizer._get_current_learning_rate``
    (``keras/src/optimizers/base_optimizer.py``), Keras 3.5-3.15.
    """
    import keras

    return keras.optimizers.Optimizer._get_current_learning_rate(optimizer)


def model_supports_jit(model) -> bool:
    """Whether Keras would XLA-compile ``model``'s training step (``jit_compile="auto"``).

    Upstream: ``keras/src/trainers/trainer.py`` (``model_supports_jit``),
    Keras 3.5-3.15. Without it, ``True`` (the public default of
    ``jit_compile="auto"`` on an accelerator).
    """
    try:
        from keras.src.trainers.trainer import model_supports_jit as supports
    except ImportError:  # pragma: no cover - a Keras without it
        return True
    return bool(supports(model))


def compute_loss_with_training_flag(model, x, y, y_pred, sample_weight, training):
    """``model.compute_loss`` with the ``training`` flag Keras passes inside ``fit``.

    Keras 3.15's ``fit`` calls the private ``Model._compute_loss(...,
    training=...)`` (``keras/src/trainers/trainer.py``), which forwards
    ``training`` to a user's ``compute_loss`` override that accepts it; the
    public ``compute_loss`` takes no such flag in older Kerases. Falls back to
    the public call.
    """
    compute = getattr(model, "_compute_loss", None)
    if compute is not None:
        return compute(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
    return model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)


def loss_tracker(model):
    """The ``keras.metrics.Mean`` that ``fit`` updates with the loss (``None`` if absent).

    Upstream: ``Trainer._loss_tracker`` (``keras/src/trainers/trainer.py``),
    Keras 3.5-3.15; the Trainer updates it so that ``model.metrics`` and the
    logs hold the loss as they do under ``fit``.
    """
    return getattr(model, "_loss_tracker", None)


def metrics_in_order(model, logs: dict):
    """``logs`` as the list ``model.evaluate`` returns: the order of ``model.metrics`` (each
    compiled metric's own entries in turn), then any other key alphabetically; one value alone
    is returned as it is.

    Upstream: ``Trainer._flatten_metrics_in_order`` (``keras/src/trainers/trainer.py``),
    Keras 3.8-3.15.
    """
    return model._flatten_metrics_in_order(logs)


def loss_total_and_count(model):
    """``(total, count)`` of the loss tracker this epoch: the batch-size-weighted sum of batch losses and the weight.

    ``fit`` (and the Trainer) update the tracker once per train step with
    ``update_state(loss, sample_weight=batch_size)`` and reset it at each
    epoch's start, so the change of ``total / count`` across one batch is
    that batch's loss, exactly, for any batch sizes. Upstream: the ``total``
    and ``count`` variables of ``keras.metrics.Mean``
    (``Reduce`` in ``keras/src/metrics/reduction_metrics.py``) and the
    update in ``keras/src/backend/*/trainer.py``, Keras 3.5-3.15. ``None``
    when the model has no loss tracker.
    """
    import keras

    tracker = loss_tracker(model)
    if tracker is None or not hasattr(tracker, "total") or not hasattr(tracker, "count"):
        return None
    return (float(keras.ops.convert_to_numpy(tracker.total)), float(keras.ops.convert_to_numpy(tracker.count)))


def set_loss_total_and_count(model, total, count) -> None:
    """Put the loss tracker's ``total`` and ``count`` back to values read by :func:`loss_total_and_count`.

    Used to take an undone batch out of the epoch's loss (``SpikeDetection``).
    Upstream: as :func:`loss_total_and_count`.
    """
    tracker = loss_tracker(model)
    tracker.total.assign(total)
    tracker.count.assign(count)


def clear_initial_epoch(model) -> None:
    """Forget an epoch set by a callback in an earlier ``fit`` (see :func:`initial_epoch_set_by_callbacks`)."""
    model._initial_epoch = None


def initial_epoch_set_by_callbacks(model, default: int) -> int:
    """The epoch ``keras.callbacks.BackupAndRestore`` restored in ``on_train_begin``, or ``default``.

    Keras's ``BackupAndRestore`` tells the training loop where to resume by
    setting ``model._initial_epoch``, which ``fit`` reads after
    ``on_train_begin``. Upstream: ``keras/src/callbacks/backup_and_restore.py``
    and ``keras/src/trainers/trainer.py``, Keras 3.5-3.15. The Trainer calls
    :func:`clear_initial_epoch` before ``on_train_begin`` and this after it.
    """
    return getattr(model, "_initial_epoch", None) or default


def nested_layers(model) -> list:
    """Every layer inside ``model``, nested ones included (not the model itself).

    Upstream: ``Layer._flatten_layers`` (``keras/src/layers/layer.py``),
    Keras 3.5-3.15. Public fallback: ``model.layers`` (the top level only).
    """
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is None:
        return list(model.layers)
    return list(flatten(include_self=False))


def schedule_free_adamw_z(optimizer, variable):
    """The ``z`` sequence that Keras's ``ScheduleFreeAdamW`` keeps for ``variable``.

    Keras stores ``z`` in its ``momentum`` slot and the model variable holds
    ``y``; ``x = (y - (1 - beta_1) z) / beta_1``. Upstream:
    ``ScheduleFreeAdamW._momentums`` and ``BaseOptimizer._get_variable_index``
    (``keras/src/optimizers/schedule_free_adamw.py``,
    ``keras/src/optimizers/base_optimizer.py``), tested with Keras 3.15. No public twin.
    """
    return optimizer._momentums[optimizer._get_variable_index(variable)]


def optimizer_trained_variables(optimizer) -> list:
    """The variables ``optimizer`` was built for (empty before ``build``).

    Upstream: ``BaseOptimizer._trainable_variables``
    (``keras/src/optimizers/base_optimizer.py``), Keras 3.5-3.15. No public twin.
    """
    return list(getattr(optimizer, "_trainable_variables", []))


def in_stateless_scope() -> bool:
    """Whether Keras is tracing in a stateless scope (symbolic build, ``stateless_call``), where no
    variable may be created.

    Upstream: ``keras/src/backend/common/stateless_scope.py`` (``in_stateless_scope``),
    Keras 3.5-3.15. Without it, ``False``.
    """
    try:
        from keras.src.backend import in_stateless_scope as check
    except ImportError:  # pragma: no cover - other Keras layouts
        return False
    return bool(check())


def unscale_loss_for_distribution(loss):
    """``loss`` times the number of replicas: the value ``fit`` records for a per-replica scaled loss.

    Upstream: ``keras/src/losses/loss.py`` (``unscale_loss_for_distribution``),
    Keras 3.5-3.15, what Keras's own ``train_step`` passes to its loss tracker.
    Fallback: the same multiplication with TensorFlow's replica count.
    """
    try:
        from keras.src.losses.loss import unscale_loss_for_distribution as unscale
    except ImportError:  # pragma: no cover - other Keras layouts
        import tensorflow as tf

        return loss * tf.distribute.get_strategy().num_replicas_in_sync
    return unscale(loss)


def add_slot_variables(optimizer, variables, names, initializer="zeros"):
    """One optimizer slot per model variable for each name in ``names``.

    ``Optimizer.add_optimizer_variables`` (``keras/src/optimizers/base_optimizer.py``)
    exists from Keras 3.10 on. On older Kerases this builds the same variables
    through the public ``add_variable_from_reference``, in the same order
    (for each model variable, one slot per name) and with ``None`` for a model
    variable whose ``overwrite_with_gradient`` is set, exactly as 3.10+ does:
    a RAdam model saved on Keras 3.8.0 loads on 3.15.1 with identical slots.

    Args:
        optimizer: the ``keras.optimizers.Optimizer`` that owns the slots.
        variables: the model variables the slots mirror (shape and dtype).
        names: one slot name (a string) or a list of them.
        initializer: an initializer (or its name) for every slot, or a list
            with one per name.

    Returns:
        A list of slots for one name, or a tuple of such lists for a list of names.

    Tested with Keras 3.8.0, 3.9.2, 3.10.0, 3.11.3 and 3.15.1.
    """
    if hasattr(optimizer, "add_optimizer_variables"):
        return optimizer.add_optimizer_variables(variables, names, initializer)
    return _add_slot_variables_by_reference(optimizer, variables, names, initializer)


def _add_slot_variables_by_reference(optimizer, variables, names, initializer="zeros"):
    """``add_slot_variables`` through the public ``add_variable_from_reference`` (Keras < 3.10)."""
    single = isinstance(names, str)
    name_list = [names] if single else list(names)
    initializers = initializer if isinstance(initializer, (list, tuple)) else [initializer] * len(name_list)
    if len(initializers) != len(name_list):
        raise ValueError(
            "Argument `initializer` must be one initializer or one per slot name "
            f"({len(name_list)}). Received: initializer={initializer!r}"
        )
    slots = tuple([] for _ in name_list)
    for variable in variables:
        skip = getattr(variable, "overwrite_with_gradient", False)
        for slot_list, name, init in zip(slots, name_list, initializers):
            slot_list.append(
                None if skip else optimizer.add_variable_from_reference(variable, name=name, initializer=init)
            )
    return slots[0] if single else slots


def metric_direction(metric):
    """Whether a Keras metric improves upward (``"up"``), downward (``"down"``), or ``None`` if unknown.

    Keras keeps this in the non-public ``Metric._direction``, set in the
    constructors of its built-in metrics (``keras/src/metrics/*.py``: accuracy,
    AUC, precision and recall ``"up"``; errors and cross-entropies ``"down"``)
    and read by ``keras/src/callbacks/monitor_callback.py`` (3.11+) or by
    ``EarlyStopping``/``ModelCheckpoint`` themselves (older). There is no
    public twin; a metric without the attribute (a user's own, a function
    wrapped by ``compile``) gives ``None``.

    Tested with Keras 3.8.0, 3.9.2, 3.10.0, 3.11.3 and 3.15.1.
    """
    direction = getattr(metric, "_direction", None)
    return direction if direction in ("up", "down") else None


def variable_has_value(variable) -> bool:
    """Whether reading ``variable`` now gives a value (``False`` while Keras's JAX trainer holds it).

    During ``fit``/``evaluate``/``predict`` on JAX the trainer moves every
    model, optimizer and metric variable's value into its own state and sets
    the variable's ``_value`` to ``None`` (``JAXTrainer._purge_model_variables``,
    ``keras/src/backend/jax/trainer.py``); ``jax_state_sync()`` puts them back.
    If a step fails before the state was ever returned (an error in the first
    step), ``fit``'s ``finally`` still calls ``finalize_variable_values`` with
    the values gone, and reading one raises ``TypeError: 'NoneType' object is
    not callable``, which hides the step's own error. Inside a stateless scope
    the scope holds the value. Tested with Keras 3.15.1 (TensorFlow, JAX,
    PyTorch). No public twin exists.
    """
    if in_stateless_scope():
        return True
    return getattr(variable, "_value", None) is not None


def enclosing_stateless_values():
    """What the active ``keras.StatelessScope`` maps, ``{id(variable): value}`` (``{}`` outside
    any); ``None`` where it cannot be read.

    Inside ``stateless_apply`` / ``fit`` on JAX these are the traced values, which a nested
    scope must read for every variable it does not map itself (``keras.StatelessScope`` alone
    reads an unmapped variable's stored value).

    Upstream: ``keras/src/backend/common/stateless_scope.py`` (``get_stateless_scope`` and the
    scope's ``state_mapping``, keyed by ``id(variable)``), Keras 3.8-3.15. No public twin.
    """
    try:
        from keras.src.backend.common.stateless_scope import get_stateless_scope
    except ImportError:  # pragma: no cover - other Keras layouts
        return None
    outer = get_stateless_scope()
    return {} if outer is None else dict(outer.state_mapping)


def stateless_scope_over(enclosing, pairs):
    """A ``keras.StatelessScope`` mapping ``pairs`` (``(variable, value)``) that reads every other
    variable from ``enclosing`` (:func:`enclosing_stateless_values`).

    Upstream: as :func:`enclosing_stateless_values` (the scope's ``state_mapping``).
    """
    import keras

    scope = keras.StatelessScope(state_mapping=pairs)
    scope.state_mapping = {**enclosing, **scope.state_mapping}
    return scope


def stateless_scope_values(scope) -> dict:
    """A copy of what ``scope`` maps: ``{id(variable): value}``, assignments made in it included.

    Upstream: ``keras/src/backend/common/stateless_scope.py`` (``StatelessScope.state_mapping``),
    Keras 3.8-3.15.
    """
    return dict(scope.state_mapping)


def gradient_accumulators(optimizer, variables) -> list:
    """Keras's gradient accumulator of ``optimizer`` for each of ``variables`` (``None`` each when
    the optimizer does not accumulate).

    With ``gradient_accumulation_steps=k`` Keras sums the micro-batch gradients in one slot per
    variable and, on the ``k``-th call, applies ``(accumulator + g) / k`` and zeroes the slot;
    reading the slot *before* ``optimizer.apply`` therefore gives the gradient that call applies.
    The optimizer must be built.

    Upstream: ``BaseOptimizer._accumulated_gradients``, ``BaseOptimizer._get_variable_index``
    and ``_backend_apply_gradients`` (``keras/src/optimizers/base_optimizer.py``; JAX:
    ``keras/src/backend/jax/optimizer.py``, the same rule). Checked with Keras 3.8.0 and 3.15.1,
    whose rule is the same on every backend. No public twin exists.
    """
    if not optimizer.gradient_accumulation_steps:
        return [None for _ in variables]
    return [optimizer._accumulated_gradients[optimizer._get_variable_index(v)] for v in variables]
