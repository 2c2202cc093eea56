"""The one NaN/Inf policy: what "finite" means and what a guard does when something is not.

Every guard of the library uses it: the Trainer's ``on_nan``
(``training/non_finite.py``), the ``SkipNonFinite`` gradient transform,
``EarlyStopping(check_finite=True)`` and the tuners' trial guard. They look at
different things (a loss in the graph, gradients, logged values, weights), so
each decides *when* to look; this module says *how*:

* :func:`all_finite` (tensors, any Keras backend) and :func:`is_finite` (host
  values) are the one definition: every entry of every value is neither NaN
  nor infinite;
* :class:`NonFinitePolicy` is the one way to act: ``"skip"`` the step,
  ``"stop"`` training (``model.stop_training``, with a warning), or
  ``"raise"`` an error, with a message naming what was not finite and where.
"""

from __future__ import annotations

import logging

import numpy as np

from keras_trainkit.utils.validation import check_in

logger = logging.getLogger(__name__)

ACTIONS = ("stop", "skip", "raise")


def all_finite(values):
    """A scalar boolean tensor: every entry of every value (``None`` skipped) is finite.

    Works on tensors and variables of every Keras backend, inside compiled
    functions too (``keras.ops``).
    """
    from keras import ops

    checks = [ops.all(ops.isfinite(v)) for v in values if v is not None]
    if not checks:
        return ops.convert_to_tensor(True)
    return ops.all(ops.stack(checks))


def is_finite(value) -> bool:
    """Whether a host value (number, array, tensor read back) holds no NaN or Inf."""
    try:
        return bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
    except (TypeError, ValueError):
        return True  # not numeric: nothing to check


class NonFinitePolicy:
    """What to do on a NaN or Inf: ``"skip"`` the step, ``"stop"`` training, or ``"raise"``.

    Args:
        action: ``"stop"``, ``"skip"`` or ``"raise"``.
        error: the exception class raised under ``"raise"``.
        owner: who acts, for the message (e.g. ``"EarlyStopping"``).

    Example:
        >>> policy = NonFinitePolicy("raise", error=FloatingPointError, owner="my loop")
        >>> policy.action
        'raise'
    """

    def __init__(self, action="stop", error=FloatingPointError, owner="training"):
        self.action = check_in("action", action, ACTIONS)
        self.error = error
        self.owner = owner

    def act(self, model, message) -> None:
        """Raise (``"raise"``); else log ``message`` and, under ``"stop"``, set ``model.stop_training``."""
        if self.action == "raise":
            raise self.error(message)
        logger.warning("%s: %s", self.owner, message)
        if self.action == "stop" and model is not None:
            model.stop_training = True
