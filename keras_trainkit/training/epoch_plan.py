"""Where each of the Trainer's epochs gets its batches.

A *pass* is one pass over the data. Without ``steps_per_epoch`` each epoch is a pass:

* **Arrays**: one iterator over pass after pass for the whole ``fit``
  (``keras_trainkit.utils.pipelines.array_dataset(repeat=True)``, each pass
  its own permutation and its own last, partial batch), rebuilt only when a
  :class:`~keras_trainkit.training.BatchSizeSchedule` changes the batch size.
* **Arrays with a checkpoint**: each pass's order is a permutation drawn from
  ``(seed, pass)``, so a resumed pass replays the order of the interrupted
  one; the batches already done are skipped.
* **A dataset**: a fresh iterator per pass (as in ``fit``); with a checkpoint
  the dataset's random state is marked first
  (:class:`~keras_trainkit.training.checkpointer.DatasetCursor`) and a resumed
  pass skips its batches already done.

With **``steps_per_epoch``** (Keras's meaning, as in ``fit``) an epoch is that
many steps drawn from the current pass, which runs on across epochs; when a
pass has fewer batches left, the epoch ends with them (a warning says so) and
the next epoch starts a new pass. A dataset of unknown length is counted as it
runs (a pass ends where the data does); an infinite one (``dataset.repeat()``)
is one pass that never ends, and needs ``steps_per_epoch``. A checkpoint keeps
the pass and the batches drawn from it (:class:`Position`), so a resume skips
them; for an infinite dataset that is every batch drawn since ``fit`` began.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np

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
        if sample_weight is not None:
            raise ValueError(
                f"Argument `sample_weight` must be None when `{name}` is a tf.data.Dataset (it "
                "yields them: `(x, y, sample_weight)` batches). Received: sample_weight of type "
                f"{type(sample_weight).__name__}"
            )
        if batch_size is not None:
            raise ValueError(
                f"Argument `batch_size` must be None when `{name}` is a tf.data.Dataset "
                f"(batch the dataset instead). Received: batch_size={batch_size}"
            )
        _data.check_dataset(x, model, name=name)
        return x, _data.pass_batches(x)
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
        _data.check_ends(x, steps_per_epoch, name="x", steps_name="steps_per_epoch", run="an epoch")
        if steps_per_epoch:
            self.steps = int(steps_per_epoch)
        self._iterator = None
        # With steps_per_epoch, the pass over the data that the next batches come from,
        # and how many of its batches earlier epochs drew (see `Position`).
        self.position = Position(pass_index=int(initial_epoch), pass_step=0)

    def resume_at(self, position: "Position", epoch: int | None = None, step: int = 0) -> None:
        """Continue from a checkpoint's ``position`` (the next :meth:`epoch` makes its iterator).

        ``epoch`` and ``step``: where the checkpoint was written. Under a
        ``BatchSizeSchedule`` a position part-way through a pass belongs to the
        batch size of the epoch that drew from it last (``epoch``, or the epoch
        before at an epoch's start): the plan takes that size, so that the next
        :meth:`epoch` starts a new pass only where the uninterrupted run did.
        """
        self.position = position
        self._iterator = None
        if self.schedule is not None and epoch is not None and position.pass_step:
            self.batch_size = self.schedule(int(epoch) if step else max(int(epoch) - 1, 0))

    def epoch(self, epoch: int, first_step: int = 0, cursor=None, seed=None):
        """``(iterator, steps, changed)`` for ``epoch``; ``changed``: the steps per epoch changed.

        ``first_step`` batches are skipped (a resumed epoch); ``cursor`` marks
        a dataset's random state before each pass's iterator is made; ``seed``
        orders a checkpointed array pass.
        """
        changed = False
        if self.schedule is not None and self.schedule(epoch) != self.batch_size:
            self.batch_size = self.schedule(epoch)
            logger.info("Batch size schedule: batch size %d.", self.batch_size)
            self._iterator = None
            if self.position.pass_step:  # a new batch size starts a new pass
                self.position = Position(self.position.pass_index + 1, 0)
            changed = True
        if not self.steps_per_epoch:  # each epoch is one whole pass
            self.position = Position(pass_index=epoch, pass_step=0)
            self._iterator = None if self.is_dataset or self.ordered else self._iterator
        if self._iterator is None:  # a new pass, or a resumed one past the batches already done
            self._iterator = self._pass_iterator(self.position.pass_step + first_step, cursor, seed)
        steps = self._epoch_steps(epoch)
        changed = changed or steps != self.steps
        self.steps = steps
        return self._iterator, steps, changed

    def end_epoch(self, steps_done: int, stopped: bool = False) -> None:
        """After an epoch of ``steps_done`` steps (counted from the epoch's start, resumed
        ones included): with ``steps_per_epoch``, a pass that ran out ends (the next epoch
        starts a new one). ``stopped``: training was stopped, so a short epoch is no end of data."""
        if not self.steps_per_epoch:
            return
        pass_step = self.position.pass_step + steps_done
        batches = self._pass_batches()
        ran_out = batches is None and steps_done < self.steps and not stopped and not self.infinite
        if ran_out:
            logger.warning(_RAN_OUT, self.steps_per_epoch, steps_done)
        if ran_out or (batches is not None and pass_step >= batches):
            self.position = Position(self.position.pass_index + 1, 0)
            if self.is_dataset or self.ordered:  # arrays repeat on into their next pass
                self._iterator = None
        else:
            self.position = Position(self.position.pass_index, pass_step)

    @property
    def infinite(self) -> bool:
        """Whether the data is a dataset that never ends (``dataset.repeat()``)."""
        return _data.is_infinite(self.data[0])

    @property
    def counts_steps(self) -> bool:
        """Whether an epoch must count its steps to find the end of the data (a dataset of
        unknown length with ``steps_per_epoch``): the step loop then reads them back."""
        return bool(self.steps_per_epoch) and self._pass_batches() is None and not self.infinite

    def _pass_batches(self):
        """Batches in one pass over the data; ``None`` when not known (or infinite)."""
        if not self.is_dataset:
            return math.ceil(num_examples(self.data[0]) / int(self.batch_size))
        return _data.pass_batches(self.data[0])

    def _epoch_steps(self, epoch: int) -> int:
        """The epoch's steps: a whole pass, or ``steps_per_epoch`` cut short (with Keras's
        warning) where the pass has fewer batches left, as ``fit`` does."""
        batches = self._pass_batches()
        if not self.steps_per_epoch:
            return batches if batches is not None else self.steps
        left = None if batches is None else batches - self.position.pass_step
        if left is not None and left < self.steps_per_epoch:
            logger.warning(_CUT_SHORT, self.steps_per_epoch, left, batches, epoch + 1)
            return left
        return int(self.steps_per_epoch)

    def _pass_iterator(self, skip: int, cursor, seed):
        """An iterator over the current pass, past its first ``skip`` batches."""
        if self.ordered:
            return self._ordered_iterator(self.position.pass_index, skip, seed)
        if self.is_dataset:
            if cursor is not None:
                cursor.mark()  # the random state this pass's iterator starts from
            data = self.dataset.skip(skip) if skip else self.dataset
            return iter(distribute(self.strategy, data))
        x, y, sample_weight = self.data
        dataset = array_dataset(x, y, sample_weight, batch_size=self.batch_size, shuffle=self.shuffle,
                                seed=self.seed, repeat=True)
        return iter(distribute(self.strategy, dataset))

    def _ordered_iterator(self, pass_index, first_step, seed):
        x, y, sample_weight = self.data
        n = num_examples(x)
        order = np.random.default_rng([seed, pass_index]).permutation(n) if self.shuffle else np.arange(n)
        data = ordered_dataset(x, y, sample_weight, order=order, batch_size=self.batch_size)
        return iter(distribute(self.strategy, data.skip(first_step)))


class Position(NamedTuple):
    """Where the next batches come from: the pass over the data (an array pass's order is
    drawn from ``(seed, pass_index)``) and how many of its batches earlier epochs drew.
    Without ``steps_per_epoch`` each epoch is a pass (``pass_index`` is the epoch)."""

    pass_index: int
    pass_step: int


_CUT_SHORT = ("steps_per_epoch=%d asks for more batches than are left in this pass over the data "
              "(%d of %d): epoch %d ends after those, and the next epoch starts a new pass, as in "
              "`model.fit`. Give a steps_per_epoch that divides the batches of a pass, or "
              "`.repeat()` the dataset.")
_RAN_OUT = ("The dataset ran out of data before steps_per_epoch=%d steps (after %d): the epoch ends "
            "there and the next epoch starts a new pass, as in `model.fit`. `.repeat()` the dataset "
            "to draw steps_per_epoch steps in every epoch.")
