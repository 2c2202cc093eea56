"""Transforms that skip a step: the ``SkipTransform`` protocol and ``SkipNonFinite``.

A skipping transform decides, from the gradients it receives and its own
state, whether this step happens at all. It is not asked by every caller:
:class:`~keras_trainkit.optimizers.transforms.GradientChain` runs the rest of
the chain (later transforms and the optimizer update) inside a conditional on
that decision, as optax's ``apply_if_finite`` wraps its inner transformation.
So a skipped step leaves the weights, the optimizer slots, the step counter and
every later transform's state unchanged on every path that uses the chain.
"""

from __future__ import annotations

import logging

import keras
from keras import ops

from keras_trainkit._compat.keras import variable_has_value
from keras_trainkit._compat.tensorflow import in_xla_context
from keras_trainkit.optimizers.transforms._registry import register
from keras_trainkit.optimizers.transforms.base import GradientTransform
from keras_trainkit.utils.non_finite import all_finite
from keras_trainkit.utils.validation import check_number

logger = logging.getLogger(__name__)


class NonFiniteGradientError(RuntimeError):
    """Raised when ``SkipNonFinite`` skipped ``max_consecutive`` steps in a row."""


class SkipTransform(GradientTransform):
    """Base class of transforms that decide whether a step happens.

    Subclasses implement :meth:`decide`, which returns a scalar boolean tensor
    (``True``: apply this step) and records the decision in the transform's own
    state (counters, statistics). :class:`GradientChain` calls ``decide`` and
    then the transform as a map (``t(grads, variables)``, the identity unless a
    subclass says otherwise), and runs the rest of the chain only where the
    decision is ``True``. Nothing else calls ``decide``.
    """

    def decide(self, grads, variables):
        """A scalar boolean tensor: whether to apply this step; records it in the state."""
        raise NotImplementedError(f"{type(self).__name__} must implement decide(grads, variables).")

    def call(self, grads, variables):
        return grads


class _RaiseWhenStopped(keras.callbacks.Callback):
    """Raise ``NonFiniteGradientError`` after the batch in which ``SkipNonFinite`` stopped training."""

    def __init__(self, transform):
        super().__init__()
        self.transform = transform

    def on_train_batch_end(self, batch, logs=None):
        self.transform.raise_if_exhausted()


@register
class SkipNonFinite(SkipTransform):
    """Skip any update whose gradients hold NaN or Inf; stop after too many in a row.

    The decision is ``all_i all(isfinite(g_i))`` and not yet stopped; where it
    is ``False`` the chain skips the whole step: weights, optimizer slots,
    later transforms' state and the step counter are left unchanged.
    ``skipped_steps`` counts every skip, ``consecutive_skips`` the current run
    of non-finite steps. When ``consecutive_skips`` reaches ``max_consecutive``
    training is *stopped*: from then on every step is skipped, finite or not,
    until :meth:`reset`, and an error naming the cause is raised (see below).
    Called as a map, ``t(grads)`` returns the gradients unchanged if finite and
    zeros otherwise, so nothing downstream ever sees a NaN. Place it first in a
    chain: what it skips is the rest of the chain.

    Where the error is raised:

    * eagerly: ``NonFiniteGradientError`` from the step that reaches the limit;
    * in a ``tf.function`` without XLA (``model.fit`` with
      ``jit_compile=False``, the Trainer without XLA): the same step fails
      with ``tf.errors.InvalidArgumentError`` carrying the message below (an
      in-graph ``tf.debugging.Assert``), so ``fit`` stops at that batch;
    * under XLA (``jit_compile=True``): XLA compiles assertions to nothing and
      has no way to raise from compiled code, so the step cannot fail. Training
      is stopped in the graph instead (every later step is skipped, the
      weights stay as they were before the first skipped step of the run) and
      ``NonFiniteGradientError`` is raised by :meth:`raise_if_exhausted` when
      host code calls it: ``TransformedOptimizer`` does at the end of ``fit``;
      pass ``callbacks=[skip.callback()]`` to ``fit`` (Keras or the Trainer)
      to raise it at the end of the batch (the ``steps_per_execution`` call)
      in which the limit was reached (without it, the Trainer raises at the
      end of that epoch). A warning says so when the decision is traced under XLA.

    Args:
        max_consecutive: how many consecutive skipped steps stop training (an
            integer >= 1), or ``None`` to skip forever.
        name: the transform's name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import TransformedOptimizer, SkipNonFinite
        >>> skip = SkipNonFinite(max_consecutive=5)
        >>> opt = TransformedOptimizer(keras.optimizers.Adam(1e-3), [skip])
        >>> # model.compile(opt, loss, jit_compile=True); model.fit(..., callbacks=[skip.callback()])

    Paper: the dynamic loss scaling of Micikevicius et al., "Mixed Precision
    Training", ICLR 2018, which skips steps with non-finite gradients.
    """

    def __init__(self, max_consecutive=10, name=None):
        super().__init__(name=name)
        if max_consecutive is not None:
            max_consecutive = int(check_number("max_consecutive", max_consecutive, minimum=1, integer=True))
        self.max_consecutive = max_consecutive

    def build(self, variables):
        super().build(variables)
        self.skipped_steps = self.add_variable("skipped_steps", dtype="int32", statistic=True)
        self.consecutive_skips = self.add_variable("consecutive_skips", dtype="int32", statistic=True)

    def error_message(self, count=None):
        return (
            f"SkipNonFinite: the gradients held NaN or Inf in {count or self.max_consecutive} consecutive "
            f"steps (max_consecutive={self.max_consecutive}); each was skipped, so the weights are "
            "still finite, and training is stopped. Check the data and loss for NaN/Inf, lower the "
            "learning rate, add gradient clipping, or use loss scaling under float16. Call "
            "reset() on the transform to train on."
        )

    def decide(self, grads, variables):
        if not self.built:
            self.build(variables or [])
        finite = all_finite(grads)
        # Values, not Keras variables, into ops.where (JAX refuses variables there).
        previous = ops.convert_to_tensor(self.consecutive_skips)
        if self.max_consecutive is None:
            apply = finite
            consecutive = ops.where(finite, 0, previous + 1)
        else:
            stopped = ops.greater_equal(previous, self.max_consecutive)
            apply = ops.logical_and(finite, ops.logical_not(stopped))
            consecutive = ops.where(stopped, previous, ops.where(finite, 0, previous + 1))
        self.skipped_steps.assign(ops.convert_to_tensor(self.skipped_steps) + (1 - ops.cast(apply, "int32")))
        self.consecutive_skips.assign(consecutive)
        if self.max_consecutive is not None:
            self._stop_on_limit(consecutive)
        return apply

    def _stop_on_limit(self, consecutive):
        """Raise (eagerly), assert (in a graph) or warn (under XLA) at ``max_consecutive``."""
        if keras.backend.backend() != "tensorflow":
            return
        import tensorflow as tf

        if tf.executing_eagerly():
            if int(consecutive) >= self.max_consecutive:
                raise NonFiniteGradientError(self.error_message())
        elif in_xla_context():
            logger.warning(
                "SkipNonFinite(max_consecutive=%d) under XLA: compiled code cannot raise, so after %d "
                "consecutive non-finite steps training is stopped in the graph (every later step is "
                "skipped) and NonFiniteGradientError is raised only when raise_if_exhausted() runs: at "
                "the end of fit, or after every batch with fit(callbacks=[skip.callback()]).",
                self.max_consecutive,
                self.max_consecutive,
            )
        else:
            tf.debugging.Assert(ops.less(consecutive, self.max_consecutive), [self.error_message()])

    def call(self, grads, variables):
        finite = all_finite(grads)
        return [None if g is None else ops.where(finite, g, ops.zeros_like(g)) for g in grads]

    def is_stopped(self) -> bool:
        """Whether ``max_consecutive`` steps in a row were skipped (training is stopped)."""
        if not self.built or self.max_consecutive is None:
            return False
        if not variable_has_value(self.consecutive_skips):
            # JAX: fit failed before its state came back; that failure is the one to see.
            return False
        return int(ops.convert_to_numpy(self.consecutive_skips)) >= self.max_consecutive

    def raise_if_exhausted(self):
        """Raise ``NonFiniteGradientError`` if ``max_consecutive`` steps in a row were skipped.

        Reads one scalar from the device. Training stays stopped (every step
        skipped) until :meth:`reset`.
        """
        if self.is_stopped():
            raise NonFiniteGradientError(self.error_message())

    def reset(self):
        """Clear the run of consecutive skips, so that training can go on after a stop."""
        if self.built:
            self.consecutive_skips.assign(0)

    def callback(self):
        """A Keras callback that calls :meth:`raise_if_exhausted` after every batch.

        Needed under XLA (``jit_compile=True``) to stop ``model.fit`` or
        ``Trainer.fit`` at the end of the batch (``steps_per_execution`` call)
        that reached ``max_consecutive``; without XLA the step itself fails.
        Costs one scalar read from the device per batch.

        Example:
            >>> skip = SkipNonFinite(max_consecutive=3)
            >>> callbacks = [skip.callback()]  # model.fit(..., callbacks=callbacks)
        """
        return _RaiseWhenStopped(self)

    def get_config(self):
        return {**super().get_config(), "max_consecutive": self.max_consecutive}
