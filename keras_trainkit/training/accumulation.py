"""Gradient accumulation for the Trainer: the mean of ``k`` micro-batch gradients per update.

``g = (1 / k) * sum_{j=1..k} g_j``, applied once every ``k`` micro-batches.
The optimizer's ``iterations`` (and so its schedules) counts updates, not
micro-batches; a partial accumulation carries over epochs (and is saved in a
checkpoint).
"""

from __future__ import annotations

import tensorflow as tf

from keras_trainkit.utils.dtypes import float32_if_half
from keras_trainkit.utils.validation import check_number


class GradientAccumulator:
    """Sums micro-batch gradients and calls ``apply(mean)`` every ``steps`` of them.

    ``mean = (1 / k) * sum_j g_j`` (``tf.IndexedSlices`` rows are summed per
    index, as ``tf.convert_to_tensor`` does), computed in the variable's dtype,
    or in float32 for float16 and bfloat16 variables and cast back once, as
    ``optax.MultiSteps`` averages its micro-batches.

    Args:
        steps: micro-batches per update, ``k`` >= 1 (1: every gradient is applied at once).
    """

    def __init__(self, steps: int):
        self.steps = int(check_number("steps", steps, minimum=1, integer=True))
        self.sums = []
        self.micro_step = None

    def build(self, variables, strategy) -> None:
        """Create the micro-batch counter and one sum per variable (``k > 1``), once."""
        if self.micro_step is not None:
            return
        with strategy.scope():
            self.micro_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="micro_step")
            if self.steps > 1:
                # Sums of float16 / bfloat16 gradients are kept in float32: a float16 sum
                # of k gradients overflows where their mean does not (4 x 30000 -> inf),
                # and k roundings to bfloat16's 8-bit significand lose several ulps.
                self.sums = [tf.Variable(tf.zeros(v.shape, dtype=float32_if_half(v.dtype)), trainable=False,
                                         name="grad_accumulator") for v in variables]

    @property
    def variables(self) -> list:
        """The state to checkpoint: the counter, then the sums."""
        return [self.micro_step] + list(self.sums)

    def add(self, grads, apply) -> None:
        """Add ``grads``; call ``apply(mean gradients)`` when ``k`` have been added (in the graph)."""
        if self.steps == 1:
            apply(grads)
            return
        for total, g in zip(self.sums, grads):
            if g is not None:
                total.assign_add(tf.cast(g, total.dtype))
        self.micro_step.assign_add(1)

        def apply_mean():
            mean = [None if g is None else tf.cast(total / self.steps, g.dtype)
                    for total, g in zip(self.sums, grads)]
            apply(mean)
            for total in self.sums:
                total.assign(tf.zeros_like(total))
            return tf.constant(True)

        tf.cond(tf.equal(self.micro_step % self.steps, 0), apply_mean, lambda: tf.constant(False))
