"""Where each of the Trainer's epochs gets its batches.

* **Arrays**: one iterator over epoch after epoch for the whole ``fit``
  (``keras_trainkit.utils.pipelines.array_dataset(repeat=True)``, each epoch
  its own permutation and its own last, partial batch), rebuilt only when a
  :class:`~keras_trainkit.training.BatchSizeSchedule` changes the batch size.
* **Arrays with a checkpoint**: each epoch's order is a permutation drawn from
  ``(seed, epoch)``, so a resumed epoch replays the order of the interrupted
  one; the batches already done are skipped.
* **A dataset**: a fresh iterator per epoch (a ``tf.data`` pass per epoch, as
  in ``fit``); with a checkpoint the dataset's random state is marked first
  (:class:`~keras_trainkit.training.checkpointer.DatasetCursor`) and a resumed
  epoch skips its batches already done.
* **``steps_per_epoch``**: an epoch is that many steps, drawn from one
  iterator that runs on across epochs (Keras's meaning); required for an
  infinite dataset (``dataset.repeat()``).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import tensorflow as tf

from keras_trainkit.training import _data
from keras_trainkit.training.batch_size_schedule import BatchSizeSchedule
from keras_trainkit.training.replicas import distribute
from keras_trainkit.utils.pipelines import array_dataset, num_examples, ordered_dataset
from keras_trainkit.utils.validation import check_positive

logger = logging.getLogger(__name__)


def prepare_inputs(x, y, sample_weight, batch_size, model, *, shuffle, seed, repeat=False, name="x"):
    """Check inputs and return ``(tf.data.Dataset, steps per pass or None)``.

    Arrays become an ``array_dataset`` (epoch after epoch with ``repeat``;
    ``steps`` is then the length of one epoch); a dataset is used as it is.
    """
    if _data.is_dataset(x):
        if y is not None:
            raise ValueError(
                f"Argument `y` must be None when `{name}` is a tf.data.Dataset (it yields "
                f"the targets). Received: y of type {type(y).__name__}"
            )
        if batch_size is not None:
            raise ValueError(
                f"Argument `batch_size` must be None when `{name}` is a tf.data.Dataset "
                f"(batch the dataset instead). Received: batch_size={batch_size}"
            )
        _data.check_dataset(x, model, name=name)
        cardinality = int(x.cardinality()) if isinstance(x, tf.data.Dataset) else -1
        return x, (cardinality if cardinality > 0 else None)
    if x is None:
        raise ValueError(f"Argument `{name}` must hold data. Received: {name}=None")
    batch_size = 32 if batch_size is None else batch_size
    check_positive("batch_size", batch_size, integer=True)
    _data.check_arrays(x, y, sample_weight, model, name=name)
    dataset = array_dataset(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle, seed=seed,
                            repeat=repeat)
    return dataset, math.ceil(num_examples(x) / int(batch_size))


class EpochPlan:
    """The iterator and the number of steps of each epoch of one ``fit`` (see the module docstring).

    Args:
        x, y, sample_weight: the training data (arrays, or a dataset in ``x``).
        batch_size: an integer, a ``BatchSizeSchedule`` (arrays only) or ``None``.
        model: the model (its input shape is checked against the data).
        strategy: the ``tf.distribute`` strategy the batches are distributed over.
        shuffle, seed: the array order.
        initial_epoch: the first epoch (a schedule's first batch size).
        steps_per_epoch: ``None`` or the steps of every epoch.
        ordered: arrays get per-epoch orders from the checkpoint's seed.
    """

    def __init__(self, x, y, sample_weight, batch_size, *, model, strategy, shuffle, seed, initial_epoch=0,
                 steps_per_epoch=None, ordered=False):
        self.data = (x, y, sample_weight)
        self.is_dataset = _data.is_dataset(x)
        self.schedule = batch_size if isinstance(batch_size, BatchSizeSchedule) else None
        if self.schedule is not None:
            if self.is_dataset:
                raise ValueError(
                    "A BatchSizeSchedule re-batches NumPy inputs; a tf.data.Dataset is batched "
                    "by its owner (re-batch it per epoch there, or pass arrays). "
                    f"Received: batch_size={self.schedule!r} with x of type {type(x).__name__}"
                )
            batch_size = self.schedule(max(int(initial_epoch), 0))
        if batch_size is None and not self.is_dataset:
            batch_size = 32
        self.batch_size = batch_size
        self.strategy = strategy
        self.shuffle, self.seed = shuffle, seed
        self.steps_per_epoch = steps_per_epoch
        self.ordered = ordered and not self.is_dataset
        repeat = not self.is_dataset and not self.ordered
        self.dataset, self.steps = prepare_inputs(x, y, sample_weight, batch_size, model, shuffle=shuffle,
                                                  seed=seed, repeat=repeat)
        if self.is_dataset and int(x.cardinality()) == tf.data.INFINITE_CARDINALITY and not steps_per_epoch:
            raise ValueError(
                "Argument `x` is an infinite tf.data.Dataset (e.g. `.repeat()`), so an epoch would "
                "never end: pass `steps_per_epoch`. Received: steps_per_epoch=None"
            )
        if steps_per_epoch:
            self.steps = int(steps_per_epoch)
        self._iterator = None

    def epoch(self, epoch: int, first_step: int = 0, cursor=None, seed=None):
        """``(iterator, steps, changed)`` for ``epoch``; ``changed``: the steps per epoch changed.

        ``first_step`` batches are skipped (a resumed epoch); ``cursor`` marks
        a dataset's random state first; ``seed`` orders a checkpointed array epoch.
        """
        changed = False
        if self.schedule is not None and self.schedule(epoch) != self.batch_size:
            self.batch_size = self.schedule(epoch)
            logger.info("Batch size schedule: batch size %d.", self.batch_size)
            self._iterator = None
            changed = True
        if self.is_dataset:
            iterator = self._dataset_iterator(first_step, cursor)
        elif self.ordered:
            iterator = self._ordered_iterator(epoch, first_step, seed)
        else:
            if self._iterator is None:
                x, y, sample_weight = self.data
                dataset = array_dataset(x, y, sample_weight, batch_size=self.batch_size, shuffle=self.shuffle,
                                        seed=self.seed, repeat=True)
                self._iterator = iter(distribute(self.strategy, dataset))
            iterator = self._iterator
        steps = self.steps_per_epoch or self._array_steps()
        changed = changed or steps != self.steps
        self.steps = steps
        return iterator, steps, changed

    def _array_steps(self):
        if self.is_dataset:
            return self.steps
        return math.ceil(num_examples(self.data[0]) / int(self.batch_size))

    def _dataset_iterator(self, first_step, cursor):
        if self.steps_per_epoch and cursor is None:
            if self._iterator is None:  # one iterator runs on across epochs
                self._iterator = iter(distribute(self.strategy, self.dataset))
            return self._iterator
        if cursor is not None:
            cursor.mark()  # the random state this epoch's iterator starts from
        data = self.dataset.skip(first_step) if first_step else self.dataset
        return iter(distribute(self.strategy, data))

    def _ordered_iterator(self, epoch, first_step, seed):
        x, y, sample_weight = self.data
        n = num_examples(x)
        order = np.random.default_rng([seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        data = ordered_dataset(x, y, sample_weight, order=order, batch_size=self.batch_size)
        return iter(distribute(self.strategy, data.skip(first_step)))
