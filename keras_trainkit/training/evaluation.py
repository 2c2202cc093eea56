"""The Trainer's evaluation and prediction loops, and the weights they run at.

They run at the optimizer's evaluation weights (Schedule-Free's average
``x``): ``Trainer.evaluation_weights()`` returns an
:class:`~keras_trainkit.callbacks.evaluation_weights.EvaluationWeightsSwap`
for its model: ``evaluate``, ``predict`` and fit's validation run inside it
(the evaluation weights in the model, every BatchNorm layer's statistics
recomputed at them over one pass of at most 50 training batches, everything
put back exactly afterwards); ``fit`` calls its ``resume()`` before the first
step (the training weights back, when an earlier ``fit`` left the evaluation
weights in the model, so training goes on exactly) and its ``finalize()`` at
the end (the evaluation weights stay in the model, statistics recomputed).
For an optimizer without evaluation weights (see
``keras_trainkit.optimizers.find_evaluation_weights``) nothing happens.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_trainkit.callbacks.evaluation_weights import EvaluationWeightsSwap
from keras_trainkit.training import replicas
from keras_trainkit.training.compiled import bind
from keras_trainkit.training.step_loop import StepLoop
from keras_trainkit.utils.values import scalar_logs

#: BatchNorm statistics are recomputed over at most this many batches (the authors use 50).
BATCH_NORM_STEPS = 50


class TrainingBatches:
    """One pass over the training batches of the last ``fit``: the data for BatchNorm statistics."""

    def __init__(self):
        self.dataset = None
        self.steps = BATCH_NORM_STEPS

    def remember(self, plan):
        """Keep ``plan``'s batches (an ``EpochPlan``): arrays repeat, so one epoch of them is taken."""
        self.dataset = plan.dataset.take(plan.steps) if plan.steps else plan.dataset
        self.steps = min(BATCH_NORM_STEPS, plan.steps or BATCH_NORM_STEPS)

    def swap(self, model) -> EvaluationWeightsSwap:
        """An ``EvaluationWeightsSwap`` for ``model`` recomputing BatchNorm statistics over these batches."""
        return EvaluationWeightsSwap(model, bn_data=self.dataset, bn_steps=self.steps)


def evaluate_batches(model, strategy, loop, test_function, dataset, steps, callbacks):
    """Run ``test_function`` in ``loop`` (a ``StepLoop``) over a prepared ``dataset`` of ``steps``
    batches under ``strategy``; returns the logs."""
    callbacks.on_test_begin()
    model.reset_metrics()
    iterator = iter(replicas.distribute(strategy, dataset))
    logs, _ = loop.run(bind(test_function, iterator), steps,
                       begin=callbacks.on_test_batch_begin, end=callbacks.on_test_batch_end)
    logs = scalar_logs(logs)
    callbacks.on_test_end(logs)
    return logs


def predict_batches(strategy, predict, dataset):
    """The compiled ``predict`` function over every batch of ``dataset``, concatenated as NumPy arrays."""
    iterator = iter(replicas.distribute(strategy, dataset))
    outputs = []

    def call(limit):
        batch = next(iterator, None)
        if batch is None:
            return 0, None
        return 1, tf.nest.map_structure(lambda t: t.numpy(), predict(batch))

    StepLoop(1).run(call, None, begin=lambda step: None, end=lambda step, out: outputs.append(out))
    if not outputs:
        raise ValueError("Argument `x` must yield at least one batch. Received: empty data")
    return tf.nest.map_structure(lambda *parts: np.concatenate(parts, axis=0), *outputs)
