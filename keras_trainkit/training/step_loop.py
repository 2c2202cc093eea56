"""The one step loop of the Trainer, shared by ``fit``, ``evaluate`` and ``predict``.

A pass (an epoch of training, an evaluation, a prediction) is a sequence of
calls of a compiled function, each running up to ``steps_per_execution``
steps; the callbacks' batch hooks run once per call, as in ``model.fit``.
"""

from __future__ import annotations

import tensorflow as tf


class StepLimits:
    """The ``limit`` tensor of a call: ``min(k, remaining)``, made once per value."""

    def __init__(self, k: int):
        self.k = k
        self._tensors = {}

    def __call__(self, remaining):
        limit = self.k if remaining is None else min(self.k, remaining)
        if limit not in self._tensors:
            self._tensors[limit] = tf.constant(limit, tf.int32)
        return self._tensors[limit]


class StepLoop:
    """Run calls of up to ``k`` steps until ``steps`` steps (or the data) are done.

    ``call(limit) -> (n, payload)`` runs at most ``limit`` steps and returns
    how many it ran (a tensor) and what they produced (metric results, or
    outputs). When ``steps`` is known, ``n`` is not read back from the device
    (each call runs ``min(k, steps - step)`` steps); otherwise a call that
    runs fewer than asked marks the end of the data.

    Args:
        steps_per_execution: ``k``, the steps per call.
    """

    def __init__(self, steps_per_execution: int):
        self.k = int(steps_per_execution)
        self._limits = StepLimits(self.k)

    def run(self, call, steps, *, begin, end, first_step=0, after_call=None, should_stop=None, count=False):
        """Run the pass; returns ``(payload of the last call, steps done)``.

        ``begin(step)`` and ``end(last_step, payload)`` are the batch hooks;
        ``after_call(step, n)`` runs after each call (checkpoints);
        ``should_stop()`` ends the pass after a call (``model.stop_training``);
        ``count``: read ``n`` back although ``steps`` is known (data that may end sooner).
        """
        step, payload = first_step, None
        while steps is None or step < steps:
            begin(step)
            asked = self.k if steps is None else min(self.k, steps - step)
            n, result = call(self._limits(None if steps is None else steps - step))
            n = int(n) if steps is None or count else asked
            if n == 0:
                break
            payload = result
            step += n
            end(step - 1, payload)
            if after_call is not None:
                after_call(step, n)
            if (should_stop is not None and should_stop()) or n < asked:
                break
        return payload, step
