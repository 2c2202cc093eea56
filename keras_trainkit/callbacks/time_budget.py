"""Stop training cleanly once a wall-clock budget is spent."""

from __future__ import annotations

import logging
import time

from keras_trainkit.callbacks._monitor import TrainkitCallback
from keras_trainkit.callbacks._registry import register
from keras_trainkit.utils.validation import check_non_negative, check_positive

logger = logging.getLogger(__name__)

# Module-level so tests can substitute a fake clock.
_clock = time.monotonic


@register
class TimeBudget(TrainkitCallback):
    """Stop training at the end of the batch during which ``seconds`` of wall-clock
    time have passed since ``on_train_begin``.

    The rule: after each training batch, stop if ``now - start >= seconds``. The
    batch that crosses the budget completes (weights stay consistent), the
    epoch then ends normally (validation and ``on_epoch_end`` run, so
    checkpoints are written) and training stops. The clock is
    ``time.monotonic``; time spent in validation counts.

    Args:
        seconds: the budget in seconds (> 0).
        verbose: 0 logs the stop at INFO level, 1 at WARNING level.

    Attributes:
        stopped_reason: ``"time_budget"`` once it stopped training, else ``None``.
        elapsed: seconds since training began, updated after every batch.

    Example:
        >>> budget = TimeBudget(seconds=3600)
        >>> budget.get_config()["seconds"]
        3600.0
    """

    def __init__(self, seconds=3600.0, verbose=0):
        super().__init__()
        check_positive("seconds", seconds)
        check_non_negative("verbose", verbose, integer=True)
        self.seconds = float(seconds)
        self.verbose = int(verbose)
        self._reset_state()

    def _reset_state(self):
        self.start_time = None
        self.elapsed = 0.0
        self.stopped_reason = None
        self.stopped_epoch = None
        self.stopped_batch = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._reset_state()
        self.start_time = _clock()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.start_time is None:
            self.start_time = _clock()
        self.elapsed = _clock() - self.start_time
        if self.stopped_reason is None and self.elapsed >= self.seconds:
            self.stopped_reason = "time_budget"
            self.stopped_epoch = self._epoch
            self.stopped_batch = batch
            self._stop()
            logger.log(
                logging.WARNING if self.verbose else logging.INFO,
                "TimeBudget stopped training: %.1f s elapsed >= budget of %.1f s "
                "(epoch %d, batch %d).", self.elapsed, self.seconds, self._epoch + 1, batch,
            )

    def get_config(self):
        return {"seconds": self.seconds, "verbose": self.verbose}
