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

import logging

import numpy as np
import tensorflow as tf

from keras_trainkit.callbacks.evaluation_weights import EvaluationWeightsSwap
from keras_trainkit.training import _data, replicas
from keras_trainkit.training.compiled import bind
from keras_trainkit.utils.validation import check_positive
from keras_trainkit.utils.values import scalar_logs

logger = logging.getLogger(__name__)

#: BatchNorm statistics are recomputed over at most this many batches (the authors use 50).
BATCH_NORM_STEPS = 50


class TrainingBatches:
    """One pass over the training batches of the last ``fit``: the data for BatchNorm statistics."""

    def __init__(self):
        self.dataset = None
        self.steps = BATCH_NORM_STEPS

    def remember(self, plan, model):
        """Keep ``plan``'s batches (an ``EpochPlan``): arrays repeat, so one epoch of them is taken.

        Raises:
            ValueError: the batches are a distributed dataset (whose per-replica parts the
                BatchNorm recomputation cannot read) and ``model`` would need them: it has
                BatchNormalization layers and its optimizer keeps evaluation weights.
        """
        self.steps = min(BATCH_NORM_STEPS, plan.steps or BATCH_NORM_STEPS)
        if isinstance(plan.dataset, tf.data.Dataset):
            self.dataset = plan.dataset.take(plan.steps) if plan.steps else plan.dataset
            return
        self.dataset = None
        if self.swap(model).recomputes_batch_norm:
            raise ValueError(
                "Argument `x` must be a tf.data.Dataset that the Trainer distributes itself when the "
                "optimizer keeps evaluation weights and the model has BatchNormalization layers: "
                "their statistics are recomputed at the evaluation weights from the training batches. "
                f"Received: x of type {type(plan.dataset).__name__} with optimizer "
                f"{type(model.optimizer).__name__}"
            )

    def swap(self, model) -> EvaluationWeightsSwap:
        """An ``EvaluationWeightsSwap`` for ``model`` recomputing BatchNorm statistics over these batches."""
        return EvaluationWeightsSwap(model, bn_data=self.dataset, bn_steps=self.steps)


def steps_to_run(dataset, pass_steps, steps, *, name: str, steps_name: str):
    """The steps of an evaluation or prediction over ``dataset``: ``steps`` when given
    (``None`` or a positive integer, checked), else one pass (``pass_steps``, ``None``
    when its length is unknown).

    Raises:
        ValueError: an infinite dataset without ``steps`` (the pass would never end).
    """
    if steps is not None:
        return check_positive(steps_name, steps, integer=True)
    _data.check_ends(dataset, steps, name=name, steps_name=steps_name, run="a pass over it")
    return pass_steps


def warn_if_ran_out(steps_name: str, steps, done: int) -> None:
    """Keras's warning where the data ended before ``steps`` (given) batches."""
    if steps is not None and done < steps:
        logger.warning("The data ran out after %d of %s=%d batches: the pass ends there, as in "
                       "Keras.", done, steps_name, steps)


def pass_logs(model, last_call_logs) -> dict:
    """The logs of a whole pass (an epoch's training, an evaluation), as ``model.fit`` and
    ``model.evaluate`` give them: the model's metric results read again after the last
    batch's callbacks, where they have the keys the steps returned (a custom step's other
    logs are kept as the last call returned them). A callback may change a metric's state
    in ``on_*_batch_end``: ``SpikeDetection`` takes an undone batch out of the loss
    tracker, and the last batch's change must reach the epoch's logs as it does in ``fit``."""
    if not last_call_logs:
        return scalar_logs(last_call_logs)
    metric_logs = model.get_metrics_result()
    return scalar_logs(metric_logs if set(metric_logs) == set(last_call_logs) else last_call_logs)


def evaluate_batches(model, strategy, loop, test_function, dataset, steps, callbacks, count=False):
    """Run ``test_function`` in ``loop`` (a ``StepLoop``) over ``steps`` batches of a fresh
    iterator over ``dataset`` under ``strategy`` (``count``: the data may end sooner);
    returns ``(logs, steps done)``."""
    callbacks.on_test_begin()
    model.reset_metrics()
    iterator = iter(replicas.distribute(strategy, dataset))
    logs, done = loop.run(bind(test_function, iterator), steps, count=count,
                          begin=callbacks.on_test_batch_begin, end=callbacks.on_test_batch_end)
    logs = pass_logs(model, logs)
    callbacks.on_test_end(logs)
    return logs, done


def predict_batches(strategy, loop, predict, dataset, steps, callbacks):
    """The compiled ``predict`` function (``f(iterator, limit) -> (n, outputs)``) in
    ``loop`` (a ``StepLoop``) over ``steps`` batches of ``dataset`` under ``strategy``
    (all of them for ``None``; fewer where the data ends), concatenated as NumPy
    arrays, with the callbacks' ``on_predict_*`` hooks (``{"outputs": ...}`` of each
    call's batches, as ``model.predict``); returns ``(outputs, steps done)``."""
    iterator = iter(replicas.distribute(strategy, dataset))
    bound = bind(predict, iterator)
    outputs = []

    def call(limit):
        try:
            n, output = bound(limit)
        except (StopIteration, tf.errors.OutOfRangeError):  # the data ended before this call
            return 0, None
        return n, tf.nest.map_structure(lambda t: t.numpy(), output)

    def end(step, output):
        outputs.append(output)
        callbacks.on_predict_batch_end(step, {"outputs": output})

    callbacks.on_predict_begin()
    _, done = loop.run(call, steps, count=True, begin=callbacks.on_predict_batch_begin, end=end)
    callbacks.on_predict_end()
    if not outputs:
        raise ValueError("Argument `x` must yield at least one batch. Received: empty data")
    return tf.nest.map_structure(lambda *parts: np.concatenate(parts, axis=0), *outputs), done
