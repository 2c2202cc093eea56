"""Keras: what differs between the Keras versions in the tested range (see ``pyproject.toml``).

Every function here is tested at both ends of the range by the compatibility
lane (``.ci/compat_lane.sh``) and by the full suite at the newest pins.
"""

from __future__ import annotations


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
