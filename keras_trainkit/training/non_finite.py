"""The Trainer's non-finite policy (``on_nan``) and its counters inside the compiled step.

A step is *finite* when its loss is finite on every replica and every entry
of its (summed) gradients is finite: a NaN that reaches only the gradients
(oneDNN's fused ReLU turns a NaN input into 0 in the forward pass) counts as
non-finite too. On a non-finite step the update is never applied; what
happens next is the policy:

* ``"stop"``: that step and every later step of the epoch are skipped (in the
  graph, so no per-step read-back is needed), a warning is logged and
  training stops at the end of the epoch;
* ``"skip"``: the step is skipped and training goes on; ``skipped_steps``
  counts such steps;
* ``"raise"``: as ``"stop"``, then :class:`NonFiniteLossError` is raised at
  the end of the epoch.

At each epoch end the weights are checked once more (a finite gradient can
still overflow a weight): non-finite weights stop training under ``"stop"``
and ``"skip"`` alike and raise under ``"raise"``, naming the epoch.
"""

from __future__ import annotations

import logging

import tensorflow as tf

from keras_trainkit.utils.non_finite import ACTIONS, NonFinitePolicy, all_finite

logger = logging.getLogger(__name__)

ON_NAN_POLICIES = ACTIONS


class NonFiniteLossError(FloatingPointError):
    """Raised by ``Trainer.fit`` under ``on_nan="raise"`` when a loss or gradient is NaN or Inf."""


class NonFiniteGuard:
    """The ``on_nan`` policy with its in-graph counters (see the module docstring).

    Args:
        on_nan: ``"stop"``, ``"skip"`` or ``"raise"``.
    """

    def __init__(self, on_nan: str):
        self.on_nan = on_nan
        self.policy = NonFinitePolicy(on_nan, error=NonFiniteLossError, owner="Trainer")
        self.halts = on_nan != "skip"
        self.skipped_steps = 0
        self._built = False

    def build(self, strategy) -> None:
        """Create the counters (once), in ``strategy``'s scope."""
        if self._built:
            return
        with strategy.scope():
            self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps",
                                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.halted = tf.Variable(False, trainable=False, name="halted")
            self.batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches_seen")
            self.bad_batch = tf.Variable(0, dtype=tf.int64, trainable=False, name="nan_batch")
            self.loss_was_finite = tf.Variable(True, trainable=False, name="loss_was_finite")
        self._built = True

    # ---------------------------------------------------------------- in the graph
    def note_loss(self, loss_finite) -> None:
        """Remember whether this step's loss was finite (for the message of a halt)."""
        self.loss_was_finite.assign(loss_finite)

    def record(self, finite) -> None:
        """Count one step; a non-finite one is skipped and, under "stop"/"raise", halts the epoch."""
        self.batches.assign_add(1)

        def bad():
            self.skipped.assign_add(1)
            if self.halts:
                self.halted.assign(True)
                self.bad_batch.assign(self.batches)
            return tf.constant(True)

        tf.cond(finite, lambda: tf.constant(False), bad)

    def running(self):
        """``None`` (never halts), or a boolean tensor: no halting step happened yet."""
        return tf.logical_not(self.halted) if self.halts else None

    # ---------------------------------------------------------------- on the host
    def begin_fit(self) -> None:
        self._skipped_before = int(self.skipped.numpy())
        self.halted.assign(False)
        self.batches.assign(0)

    def end_epoch(self, epoch: int, model) -> None:
        """After an epoch: act on a halt, then check the weights; sets ``model.stop_training``."""
        if self.halts and bool(self.halted.numpy()):
            batch = int(self.bad_batch.numpy())
            what = "loss" if not bool(self.loss_was_finite.numpy()) else "gradients (the loss was finite)"
            self._act(model, f"Non-finite {what} in epoch {epoch + 1} (batch {batch} of this fit): its "
                             f"update and the rest of the epoch were skipped; training stops "
                             f"(on_nan={self.on_nan!r}).")
        if not bool(all_finite(model.trainable_variables).numpy()):
            self._act(model, f"The weights hold NaN or Inf after epoch {epoch + 1}, although every applied "
                             "step had finite gradients (an update overflowed: lower the learning rate, "
                             f"clip the gradients or use float32 weights); training stops (on_nan={self.on_nan!r}).")

    def _act(self, model, message) -> None:
        self.skipped_steps = int(self.skipped.numpy())
        if self.on_nan == "skip":  # weights that overflowed stop training under "skip" too
            NonFinitePolicy("stop", owner="Trainer").act(model, message)
        else:
            self.policy.act(model, message)

    def end_fit(self) -> None:
        self.skipped_steps = int(self.skipped.numpy())
        new = self.skipped_steps - self._skipped_before
        if new and self.on_nan == "skip":
            logger.warning("Skipped %d step(s) with a non-finite loss or gradients (on_nan='skip').", new)
