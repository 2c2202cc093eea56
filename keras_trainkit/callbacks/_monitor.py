"""Shared plumbing for the callbacks of this package.

* :class:`TrainkitCallback` gives every callback ``from_config`` and a
  ``__deepcopy__`` that builds a fresh instance from ``get_config()``
  (KerasTuner deep-copies callbacks for every trial; a copy must not drag the
  previous trial's model along) and passes non-config references (data sets)
  through by reference.
* :class:`MonitorBase` infers the direction of the watched quantity from the
  model's metrics as Keras's callbacks do, and adds argument validation, a
  relative ``min_delta`` and plain-float comparisons.
* :class:`StepCount` counts training steps from the batch index, so that
  ``steps_per_execution`` does not change what "every N steps" means.
* :class:`TrackedBatchLoss` reads each train call's loss from the model's loss
  tracker (``SpikeDetection`` and ``TrainingMonitor``).
"""

from __future__ import annotations

import warnings

import keras

from keras_trainkit._compat.keras import (
    initial_epoch_set_by_callbacks, loss_total_and_count, metric_direction, set_loss_total_and_count)
from keras_trainkit.utils.validation import check_in, check_non_negative, check_number, check_type
from keras_trainkit.utils.values import to_float


def sync_model_state(model) -> None:
    """Put the values of ``model``'s variables back on them mid-``fit`` (JAX), so a callback can read or assign them.

    Keras's JAX trainer keeps the variables' values in its own state during an
    epoch; its public ``jax_state_sync()`` writes them back, and the next
    batch then takes its state from the variables (assignments included).
    Nothing to do on TensorFlow and PyTorch, whose variables always hold the values.
    """
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()


class StepCount:
    """The training steps of a run, counted from the batch index Keras passes.

    Keras calls the batch hooks once per call of ``steps_per_execution`` steps,
    with the index (in the epoch) of the call's first step at
    ``on_train_batch_begin`` and of its last at ``on_train_batch_end``:
    counting the calls would be off by that factor.
    """

    def __init__(self):
        self.step = 0  # steps done in the run
        self.epoch_first = 0  # steps done before the current epoch

    def begin_epoch(self) -> None:
        self.epoch_first = self.step

    def before_batch(self, batch) -> int:
        """The steps done before the call that starts at ``batch`` of this epoch."""
        return self.epoch_first + int(batch)

    def end_batch(self, batch, steps=None) -> int:
        """Count the call that ended at ``batch`` of this epoch; returns the steps done before it.

        ``steps``, the epoch's steps (``params["steps"]``) when known, caps the
        index: ``model.fit`` passes ``first + steps_per_execution - 1`` also for
        a shorter last call (``batch=5`` after the 5th and last step of an
        epoch with ``steps_per_execution=2``), one step past the epoch's end.
        """
        batch = int(batch)
        if steps:
            batch = min(batch, int(steps) - 1)
        before, self.step = self.step, self.epoch_first + batch + 1
        return before


class TrackedBatchLoss:
    """The loss of each train call's batches, from the change of the model's loss tracker.

    ``fit`` and the Trainer add each step's loss ``l_i`` to the tracker with
    ``update_state(l_i, sample_weight=n_i)`` (``n_i`` the batch size) and reset
    it at each epoch's start, so across one call of ``k`` steps

        L = (total_after - total_before) / (count_after - count_before)
          = sum(n_i l_i) / sum(n_i)

    exactly, for any batch sizes (a logged running mean ``m_k`` recovers it as
    ``k m_k - (k - 1) m_{k-1}`` only for equal sizes: a smaller last batch gets
    a blend of its loss and the epoch's mean).
    """

    def __init__(self):
        self.totals = (0.0, 0.0)  # the tracker's (total, count) at the last read

    def begin_epoch(self) -> None:
        self.totals = (0.0, 0.0)  # fit resets the tracker at each epoch's start

    def read(self, model):
        """The loss of the steps since the last read, or ``None`` if the tracker did not advance
        (a ``train_step`` that does not update it, or a model without one)."""
        read = loss_total_and_count(model)
        if read is None:
            return None
        previous_total, previous_count = self.totals
        self.totals = read
        total, count = read
        if count <= previous_count:
            return None
        return (total - previous_total) / (count - previous_count)

    def take_back(self, model, totals) -> None:
        """Put the tracker (and this reader) back to ``totals``: an undone batch leaves the epoch's loss."""
        set_loss_total_and_count(model, *totals)
        self.totals = totals


def reaches_multiple(before: int, after: int, every: int) -> bool:
    """Whether the steps ``before + 1 .. after`` hold a multiple of ``every``."""
    return after // every > before // every


def check_optional_number(name, value, **kwargs):
    """``check_number`` that lets ``None`` through."""
    if value is None:
        return None
    return check_number(name, value, **kwargs)


class TrainkitCallback(keras.callbacks.Callback):
    """A Keras callback with ``from_config`` and a config-based ``__deepcopy__``.

    Subclasses list constructor arguments that are not part of the config
    (e.g. data sets) in ``_reference_args``; deep copies share them.

    A subclass with work for the first epoch of each ``fit`` (the epoch a run
    starts or resumes at) overrides :meth:`on_first_epoch_begin`; one that
    overrides ``on_train_begin`` or ``on_epoch_begin`` calls ``super()``'s.
    """

    _reference_args: tuple[str, ...] = ()

    def __init__(self):
        super().__init__()
        self._first_epoch_pending = True

    def on_train_begin(self, logs=None):
        self._first_epoch_pending = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch_pending:
            self._first_epoch_pending = False
            self.on_first_epoch_begin(epoch)

    def on_first_epoch_begin(self, epoch):
        """Called once per ``fit``, at its first ``on_epoch_begin`` (``epoch``: 0-based)."""

    def _resumed_by_backup(self, epoch) -> bool:
        """Whether ``keras.callbacks.BackupAndRestore`` set ``epoch`` as this fit's first."""
        return initial_epoch_set_by_callbacks(self.model, default=None) == epoch

    def get_config(self):  # pragma: no cover - subclasses override
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __deepcopy__(self, memo):
        kwargs = dict(self.get_config())
        for name in self._reference_args:
            kwargs[name] = getattr(self, name)
        new = type(self)(**kwargs)
        memo[id(self)] = new
        return new

    def _stop(self):
        """Ask the training loop to stop after the current batch."""
        self.model.stop_training = True


def _direction_from_metrics(model, monitor):
    """``"up"``/``"down"`` for ``monitor`` from the model's compiled metrics, as Keras infers it.

    Keras 3.11+ does this in its non-public ``MonitorCallback._set_monitor_op``
    (``keras/src/callbacks/monitor_callback.py``), older Kerases inside each
    callback: ``loss`` goes down; a metric named like ``monitor`` without its
    ``val_`` prefix, found in ``model.metrics`` or one level inside their
    ``metrics`` lists (where ``compile`` gathers them), decides, the last
    match winning. ``None`` when nothing decides.
    """
    name = monitor.removeprefix("val_")
    direction = "down" if name == "loss" else None
    for metric in _compiled_metrics(model):
        if metric.name == name:
            direction = metric_direction(metric) or direction
    return direction


def _compiled_metrics(model):
    """The model's metrics with the containers ``compile`` builds opened one level."""
    found = []
    for metric in getattr(model, "metrics", None) or []:
        inner = getattr(metric, "metrics", None)
        found.extend(inner if isinstance(inner, list) else [metric])
    return found


class MonitorBase(TrainkitCallback):
    """Common arguments and comparisons for callbacks that watch one logged quantity.

    Direction (``mode="auto"``) is inferred as Keras's own callbacks do:
    ``loss`` is minimized, a compiled metric of that name (``val_`` stripped)
    goes the way Keras's metric says (accuracy up, errors down). Beyond Keras,
    a name ending in ``loss`` or ``error`` (``out_loss`` of a multi-output
    model) is minimized; anything else needs ``mode="min"`` or ``"max"``.

    Args:
        monitor: the log key to watch.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        min_delta: the smallest change that counts as an improvement.
        min_delta_mode: ``"absolute"`` (``|new - best| > min_delta``, Keras's
            rule) or ``"relative"`` (``|new - best| > min_delta * |best|``).
    """

    def __init__(self, monitor="val_loss", mode="auto", min_delta=0.0, min_delta_mode="absolute"):
        super().__init__()
        check_type("monitor", monitor, str)
        check_in("mode", mode, ("auto", "min", "max"))
        check_non_negative("min_delta", min_delta)
        check_in("min_delta_mode", min_delta_mode, ("absolute", "relative"))
        self.monitor = monitor
        self.mode = mode
        self.min_delta = float(min_delta)
        self.min_delta_mode = min_delta_mode
        self._lower_is_better = None

    def _resolve_direction(self):
        """Set ``_lower_is_better`` (needs ``self.model`` for ``mode="auto"``)."""
        if self._lower_is_better is not None:
            return
        if self.mode != "auto":
            self._lower_is_better = self.mode == "min"
            return
        direction = _direction_from_metrics(self.model, self.monitor)
        if direction is None:
            name = self.monitor.removeprefix("val_")
            if not name.endswith("loss") and not name.endswith("error"):
                raise ValueError(
                    f"{type(self).__name__} cannot tell whether `{self.monitor}` should go up or "
                    f"down: pass mode='min' or mode='max'. Received: mode={self.mode!r}"
                )
            direction = "down"
        self._lower_is_better = direction == "down"

    def _is_improvement(self, current, best):
        """Whether ``current`` beats ``best`` by more than the required margin."""
        if best is None:
            return True
        margin = self.min_delta * (abs(best) if self.min_delta_mode == "relative" else 1.0)
        if self._lower_is_better:
            return current < best - margin
        return current > best + margin

    def _reached(self, current, threshold):
        """Whether ``current`` is at least as good as ``threshold``."""
        return current <= threshold if self._lower_is_better else current >= threshold

    def _worse_than(self, current, threshold):
        """Whether ``current`` is strictly worse than ``threshold``."""
        return current > threshold if self._lower_is_better else current < threshold

    def _monitor_value(self, logs, warned: set):
        value = to_float((logs or {}).get(self.monitor))
        if value is None and self.monitor not in warned:
            warned.add(self.monitor)
            warnings.warn(
                f"{type(self).__name__} watches `{self.monitor}`, which is not in the logs. "
                f"Available keys: {', '.join(sorted(logs or {}))}",
                stacklevel=3,
            )
        return value
