"""Evaluation weights: optimizers that train at one point and should be evaluated at another.

Schedule-Free training takes its gradients at ``y`` but the weights to
evaluate, predict with and save are the average ``x``. Whoever evaluates (the
``SwapEvaluationWeights`` callback in ``model.fit``, the ``Trainer``) asks
:func:`find_evaluation_weights` for the object that keeps them, anywhere in
the optimizer's wrapper chain, and uses its small protocol:

* ``evaluation_weights(variables=None)``: the evaluation weights as tensors;
* ``holds_evaluation_weights``: whether the model holds them now;
* ``swap_to_evaluation_weights(variables=None) -> bool`` and
  ``swap_to_training_weights(variables=None, weights=None) -> bool`` (eager;
  ``weights`` restores the values saved before the swap exactly);
* ``swaps_at_end_of_fit``: whether the optimizer itself puts the evaluation
  weights into the model at the end of ``fit`` (and the training weights back
  at its next update).
* optionally ``expect_evaluation_swaps()``: called at the start of ``fit`` by
  whoever evaluates at the evaluation weights (``ScheduleFree`` warns at the
  end of a ``fit`` without one).

``keras_trainkit.optimizers.ScheduleFree`` implements it. Keras's own
``keras.optimizers.ScheduleFreeAdamW`` keeps ``z`` in its ``momentum`` slot
and ``y`` in the model, so ``x = (y - (1 - beta_1) z) / beta_1`` too; it is
served by an adapter that swaps for evaluation and back, but never leaves
``x`` in the model: Keras's update assumes the model holds ``y`` and keeps no
record of a swap, so training (or a model saved with ``x``) would go on from
the wrong point.
"""

from __future__ import annotations

import weakref

import keras
from keras import ops

from keras_trainkit._compat.keras import optimizer_trained_variables, schedule_free_adamw_z
from keras_trainkit.optimizers.control import wrapper_chain

_ADAPTERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
# Keras's ScheduleFreeAdamW where this Keras has it (else a class nothing is an instance of).
_KERAS_SCHEDULE_FREE = getattr(keras.optimizers, "ScheduleFreeAdamW", type("NoScheduleFreeAdamW", (), {}))


class KerasScheduleFreeAdamWWeights:
    """The evaluation-weights protocol for a ``keras.optimizers.ScheduleFreeAdamW``.

    ``x = (y - (1 - beta_1) z) / beta_1`` with ``y`` the model's weights and
    ``z`` Keras's ``momentum`` slot (computed in float32). Get one with
    :func:`find_evaluation_weights`; it remembers its swap in Python, so it
    must swap back before the next training step.

    Args:
        optimizer: a built or unbuilt ``keras.optimizers.ScheduleFreeAdamW``.
    """

    swaps_at_end_of_fit = False

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.holds_evaluation_weights = False

    def _beta(self) -> float:
        beta = self.optimizer.beta_1
        beta = beta() if callable(beta) and not isinstance(beta, keras.Variable) else beta
        return float(ops.convert_to_numpy(beta))

    def _variables(self, variables):
        return list(variables) if variables is not None else optimizer_trained_variables(self.optimizer)

    def _combine(self, variables, weight_of_w, weight_of_z):
        """``weight_of_w * w + weight_of_z * z`` per variable, in float32, cast back."""
        return [
            ops.cast(weight_of_w * ops.cast(w, "float32")
                     + weight_of_z * ops.cast(schedule_free_adamw_z(self.optimizer, w), "float32"), w.dtype)
            for w in variables
        ]

    def evaluation_weights(self, variables=None):
        """``x`` for ``variables`` (default: those the optimizer was built for)."""
        variables = self._variables(variables)
        if not self.optimizer.built or self.holds_evaluation_weights:
            return [ops.copy(ops.convert_to_tensor(w)) for w in variables]
        beta = self._beta()
        return self._combine(variables, 1.0 / beta, -(1.0 - beta) / beta)

    def swap_to_evaluation_weights(self, variables=None) -> bool:
        """Put ``x`` into the model; returns whether anything changed."""
        if not self.optimizer.built or self.holds_evaluation_weights:
            return False
        variables = self._variables(variables)
        for w, x in zip(variables, self.evaluation_weights(variables)):
            w.assign(x)
        self.holds_evaluation_weights = True
        return True

    def swap_to_training_weights(self, variables=None, weights=None) -> bool:
        """Put ``y`` back (``weights`` exactly, else ``beta x + (1 - beta) z``)."""
        if not self.holds_evaluation_weights:
            return False
        variables = self._variables(variables)
        beta = self._beta()
        values = self._combine(variables, beta, 1.0 - beta) if weights is None else weights
        for w, y in zip(variables, values):
            w.assign(y)
        self.holds_evaluation_weights = False
        return True


def _keeps_evaluation_weights(optimizer) -> bool:
    return callable(getattr(optimizer, "evaluation_weights", None)) and callable(
        getattr(optimizer, "swap_to_evaluation_weights", None))


def find_evaluation_weights(optimizer):
    """The object keeping ``optimizer``'s evaluation weights, or ``None`` if it keeps none.

    Walks the wrapper chain (``LossScaleOptimizer``, ``TransformedOptimizer``,
    transforms attached by callbacks, ...) for an optimizer with the protocol
    (``ScheduleFree``) or a Keras ``ScheduleFreeAdamW`` (one adapter per
    optimizer, reused).

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import ScheduleFree, find_evaluation_weights
        >>> sf = ScheduleFree(keras.optimizers.SGD(0.1))
        >>> find_evaluation_weights(keras.optimizers.LossScaleOptimizer(sf)) is sf
        True
        >>> find_evaluation_weights(keras.optimizers.Adam()) is None
        True
    """
    for candidate in wrapper_chain(optimizer):
        if _keeps_evaluation_weights(candidate):
            return candidate
        if isinstance(candidate, _KERAS_SCHEDULE_FREE):
            if candidate not in _ADAPTERS:
                _ADAPTERS[candidate] = KerasScheduleFreeAdamWWeights(candidate)
            return _ADAPTERS[candidate]
    return None
