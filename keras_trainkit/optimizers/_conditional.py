"""Conditional updates of variables that work on every Keras backend.

``keras.ops.cond`` is ``tf.cond`` on TensorFlow, a Python ``if`` on PyTorch and
``jax.lax.cond`` on JAX. A ``lax.cond`` branch that *assigns* a Keras variable
leaks the branch's tracer into the variable (``UnexpectedTracerError`` under
``jax.jit``, in ``model.fit`` and ``stateless_apply`` alike), so on JAX a
conditional update is written as values: the ``lax.cond`` takes the variables'
values, each branch runs the update in a ``keras.StatelessScope`` over them and
returns the values it leaves, and the variables are assigned the taken branch's.

:func:`run_where` does that for an update function that assigns variables;
:func:`select` is the value form (``ops.where`` on values, never on Keras
variables, which JAX refuses there).
"""

from __future__ import annotations

import keras
from keras import ops


def value_of(variable):
    """The current value of a Keras variable as a tensor (the stateless scope's under JAX)."""
    return ops.convert_to_tensor(variable)


def select(condition, if_true, if_false):
    """``ops.where(condition, if_true, if_false)``, reading any Keras variable's value first."""
    if isinstance(if_true, keras.Variable):
        if_true = value_of(if_true)
    if isinstance(if_false, keras.Variable):
        if_false = value_of(if_false)
    return ops.where(condition, if_true, if_false)


def branch_tensors(tensors):
    """``tensors`` (a list, ``None`` entries kept) as tensors of the ``tf.cond`` branch being traced.

    A branch reads the enclosing graph's tensors as they are. Where the branch
    computes some gradients anew (a transform that changes only the kernels',
    a 16-bit variable's gradient cast to float32) and passes the others on, an
    op that needs all its inputs from one graph, the custom gradient of Keras's
    cross-replica sum of the gradients, raised "All custom_gradient outputs
    should be from the same graph". ``tf.identity`` brings each into the
    branch. Eager TensorFlow, JAX and PyTorch get the tensors as they are.
    """
    if keras.backend.backend() != "tensorflow":
        return tensors
    import tensorflow as tf

    if tf.executing_eagerly():
        return tensors
    return [None if t is None else tf.identity(t) for t in tensors]


def _unique(variables):
    seen, unique = set(), []
    for variable in variables:
        if variable is not None and id(variable) not in seen:
            seen.add(id(variable))
            unique.append(variable)
    return unique


def run_where(condition, update_fn, variables, otherwise=None):
    """Run ``update_fn()`` so that its assignments take effect only where ``condition`` holds.

    ``condition`` is a scalar boolean tensor; ``update_fn`` and ``otherwise``
    take no arguments, return nothing and assign Keras variables, all of which
    must be in ``variables`` (the model's and the optimizer's, as the caller
    knows them).

    * TensorFlow and PyTorch: ``keras.ops.cond(condition, update_fn,
      otherwise)``: a real ``tf.cond`` (only one branch runs, under XLA too) or
      a Python ``if``.
    * JAX: ``jax.lax.cond`` on the variables' values. Each branch runs its
      function in a stateless scope that maps ``variables`` to the branch's
      operands and reads every other variable as the enclosing scope does, and
      returns the values it leaves; only the taken branch runs (one pass, where
      selecting after running both took one more pass over every variable:
      ``SkipLargeUpdates`` 1.14x its chain on JAX then, 1.02x now). An assignment
      to a variable missing from ``variables`` raises ``ValueError``: list them
      all. Where the enclosing scope cannot be read (a Keras layout other than
      3.8-3.15's), both functions run on the same starting values and each
      variable is assigned ``where(condition, after update_fn, after otherwise)``.

    Args:
        condition: scalar boolean tensor.
        update_fn: the update to apply where ``condition`` holds.
        variables: every Keras variable either function may assign.
        otherwise: the update to apply where it does not (default: nothing).

    Example:
        >>> import keras
        >>> v = keras.Variable(1.0)
        >>> run_where(keras.ops.convert_to_tensor(False), lambda: v.assign(5.0), [v])
        >>> float(v)
        1.0
    """
    if keras.backend.backend() != "jax":
        ops.cond(condition, update_fn, otherwise or (lambda: None))
        return
    variables = _unique(variables)
    if not _cond_on_values(condition, update_fn, variables, otherwise):
        _select_after_both(condition, update_fn, variables, otherwise)


def _cond_on_values(condition, update_fn, variables, otherwise) -> bool:
    """JAX: ``lax.cond`` over the variables' values (False where no nested scope can be built)."""
    import jax

    from keras_trainkit._compat.keras import (
        enclosing_stateless_values,
        stateless_scope_over,
        stateless_scope_values,
    )

    enclosing = enclosing_stateless_values()
    if enclosing is None:
        return False
    watched = {id(v) for v in variables}

    def branch(fn):
        def run(values):
            scope = stateless_scope_over(enclosing, list(zip(variables, values)))
            with scope:
                if fn is not None:
                    fn()
            # Any other variable the scope maps differently from the enclosing one was assigned.
            escaped = [key for key, value in stateless_scope_values(scope).items()
                       if key not in watched and enclosing.get(key) is not value]
            if escaped:
                raise ValueError(
                    f"run_where: the conditional update assigned {len(escaped)} Keras variable(s) "
                    "missing from `variables`, whose new values would be lost; list every "
                    "variable it may assign.")
            return [scope.get_current_value(v) for v in variables]
        return run

    new = jax.lax.cond(condition, branch(update_fn), branch(otherwise), [value_of(v) for v in variables])
    for variable, value in zip(variables, new):
        variable.assign(value)
    return True


def _select_after_both(condition, update_fn, variables, otherwise):
    """Run both functions on the same starting values; keep the taken one's with ``where``."""
    before = [value_of(v) for v in variables]
    update_fn()
    taken = [value_of(v) for v in variables]
    not_taken = before
    if otherwise is not None:
        for variable, value in zip(variables, before):
            variable.assign(value)
        otherwise()
        not_taken = [value_of(v) for v in variables]
    for variable, new, other in zip(variables, taken, not_taken):
        if new is other:
            continue
        variable.assign(ops.where(condition, new, other))
