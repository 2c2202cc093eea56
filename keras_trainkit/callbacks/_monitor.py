"""Shared plumbing for the callbacks of this package.

* :class:`TrainkitCallback` gives every callback ``from_config`` and a
  ``__deepcopy__`` that builds a fresh instance from ``get_config()``
  (KerasTuner deep-copies callbacks for every trial; a copy must not drag the
  previous trial's model along) and passes non-config references (data sets)
  through by reference.
* :class:`MonitorBase` builds on Keras's own ``MonitorCallback`` (direction
  inference from the model's metrics) and adds argument validation, a relative
  ``min_delta`` and plain-float comparisons.
"""

from __future__ import annotations

import warnings

import keras

try:  # Keras's direction inference; not part of the public API, so guarded.
    from keras.src.callbacks.monitor_callback import MonitorCallback
except ImportError:  # pragma: no cover - a Keras without it
    MonitorCallback = None

from keras_trainkit.utils.validation import check_in, check_non_negative, check_number, check_type
from keras_trainkit.utils.values import to_float


def check_optional_number(name, value, **kwargs):
    """``check_number`` that lets ``None`` through."""
    if value is None:
        return None
    return check_number(name, value, **kwargs)


class TrainkitCallback(keras.callbacks.Callback):
    """A Keras callback with ``from_config`` and a config-based ``__deepcopy__``.

    Subclasses list constructor arguments that are not part of the config
    (e.g. data sets) in ``_reference_args``; deep copies share them.
    """

    _reference_args: tuple[str, ...] = ()

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


class MonitorBase(TrainkitCallback):
    """Common arguments and comparisons for callbacks that watch one logged quantity.

    Direction (``mode="auto"``) is inferred exactly as Keras does (``loss`` is
    minimized, metrics by their ``_direction``), through Keras's
    ``MonitorCallback``.

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
        if MonitorCallback is None:
            name = self.monitor.removeprefix("val_")
            if name != "loss" and not name.endswith("loss") and not name.endswith("error"):
                raise ValueError(
                    f"{type(self).__name__} cannot tell whether `{self.monitor}` should go up or "
                    f"down: pass mode='min' or mode='max'. Received: mode={self.mode!r}"
                )
            self._lower_is_better = True
            return
        probe = MonitorCallback(self.monitor, "auto")
        probe.set_model(self.model)
        probe._set_monitor_op()
        self._lower_is_better = probe.monitor_op is keras.ops.less

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
