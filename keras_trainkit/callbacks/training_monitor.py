"""Per-layer gradient norms, update-to-weight ratios, optimizer hyperparameters and
loss-spike detection, written as TensorBoard event files."""

from __future__ import annotations

import collections
import logging
import math
import numbers
import os

import keras
import numpy as np
from keras import ops

from keras_trainkit.callbacks._monitor import (
    StepCount,
    TrackedBatchLoss,
    TrainkitCallback,
    reaches_multiple,
    sync_model_state,
)
from keras_trainkit.utils.validation import check_bool
from keras_trainkit.utils.values import to_float
from keras_trainkit.utils.variables import variable_path
from keras_trainkit.callbacks._registry import register
from keras_trainkit.optimizers import control
from keras_trainkit.optimizers.transforms import GradientTransform
from keras_trainkit.utils.validation import check_in, check_number, check_positive, check_type

logger = logging.getLogger(__name__)

_EPS = 1e-12
# Config entries that are not hyperparameters worth plotting.
_SKIPPED_CONFIG = ("learning_rate", "name", "loss_scale_factor", "gradient_accumulation_steps")


class _GradientNormRecorder(GradientTransform):
    """Identity on the gradients; stores each variable's gradient L2 norm (float32)."""

    def build(self, variables):
        super().build(variables)
        self.norms = self.add_variable("norms", shape=(max(len(variables), 1),))

    def call(self, grads, variables):
        values = [
            ops.zeros((), "float32") if g is None else ops.sqrt(ops.sum(ops.square(ops.cast(g, "float32"))))
            for g in grads
        ]
        if values:
            self.norms.assign(ops.stack(values))
        return grads


def _layer_name(variable, model_name=None) -> str:
    """The layer part of a variable's path (``"dense/kernel"`` -> ``"dense"``), without a
    leading model name (Sequential models prefix their variables' paths with it)."""
    parts = variable_path(variable).split("/")
    if len(parts) > 2 and parts[0] == model_name:
        parts = parts[1:]
    return "/".join(parts[:-1]) if len(parts) > 1 else parts[0]


def _leaf_hyperparameters(leaf, prefix) -> dict:
    """``{prefix + name: float}``: the learning rate and every float hyperparameter of ``leaf``."""
    record = {prefix + "learning_rate": to_float(leaf.learning_rate)}
    try:
        config = leaf.get_config()
    except Exception:  # pragma: no cover - an optimizer without a usable config
        config = {}
    for name, value in config.items():
        if name in _SKIPPED_CONFIG or isinstance(value, bool):
            continue
        if name.startswith("ema_") and not getattr(leaf, "use_ema", False):
            continue
        if not isinstance(value, numbers.Real) and value is not None:
            continue
        live = getattr(leaf, name, value)
        number = to_float(live) if live is not None else None
        if number is not None and math.isfinite(number):
            record[prefix + name] = number
    return record


@register
class TrainingMonitor(TrainkitCallback):
    """Watch training from the inside: per-layer gradient norms, update-to-weight
    ratios, learning rate and optimizer hyperparameters (TensorBoard event files),
    and loss spikes (warn or stop).

    Every ``log_every_n_steps`` training steps it records, for each layer ``l``
    (variables grouped by the layer part of their path):

    * ``gradient_norm/<l> = sqrt(sum_{v in l} ||g_v||^2)`` and
      ``gradient_norm/global``, the gradients of that step *before* any
      clipping (seen through the same optimizer-wrapping mechanism as
      ``GradientClipping``: works with any compiled optimizer);
    * ``update_ratio/<l> = ||w_after - w_before|| / ||w_before||`` over that
      step, and ``update_ratio/global``. The rule of thumb: around ``1e-3``
      is healthy; much lower means learning is slow (learning rate too low or
      vanishing gradients), much higher means it is unstable;
    * ``optimizer/learning_rate`` (the current value, schedules evaluated) and
      every other float hyperparameter of the optimizer (``optimizer/beta_1``,
      ``optimizer/momentum``, ``optimizer/weight_decay`` ...);
    * ``loss/batch``, the loss of that batch.

    Steps are counted from the batch index: with ``steps_per_execution=k`` the
    batch hooks run once per call of ``k`` steps, a record is made at the call
    that reaches a multiple of ``log_every_n_steps``, and its update ratio and
    batch loss cover that call's steps (the gradient norms are its last step's).

    With ``log_dir`` these go to TensorBoard event files (``tf.summary``) under
    ``log_dir``; in any case they are kept in ``records`` (one dict per logged
    step).

    Loss spikes are checked at every step: the batch loss is a spike when it
    is non-finite (reported once per epoch) or above ``spike_factor`` times the median of the last
    ``spike_window`` non-spike batch losses (once at least ``spike_window //
    2`` are known). ``on_spike="warn"`` logs a warning, ``"stop"`` also stops
    training (``stopped_reason = "loss_spike"``), ``"ignore"`` only records it
    in ``spikes``. The batch loss: with ``batch_loss="running_mean"``
    (``model.fit`` and the ``Trainer``) it is read from the model's loss
    tracker, exactly for any batch sizes, as ``SpikeDetection`` reads it
    (``callbacks._monitor.TrackedBatchLoss``); where a custom ``train_step``
    does not update the tracker, it is recovered from the logged running
    means ``m_k`` as ``k * m_k - (k - 1) * m_{k-1}`` (exact for equal batch
    sizes). With ``"per_batch"`` the logged value is used as is.

    Args:
        log_dir: folder for TensorBoard event files, or ``None`` for none.
        log_every_n_steps: record every this many steps (>= 1).
        gradient_norms: record per-layer gradient norms (wraps the optimizer
            during ``fit``; see ``GradientClipping`` for how).
        update_ratios: record update-to-weight ratios (copies the weights to
            the host before each recorded step).
        hyperparameters: record the learning rate and other hyperparameters.
        spike_factor: a loss above ``spike_factor * median`` is a spike (> 1).
        spike_window: how many recent batch losses the median covers (>= 2).
        on_spike: ``"warn"``, ``"stop"`` or ``"ignore"``.
        batch_loss: ``"running_mean"`` or ``"per_batch"`` (see above).

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="out")])
        >>> model.compile(keras.optimizers.SGD(0.1), "mse")
        >>> monitor = TrainingMonitor(log_every_n_steps=1)
        >>> _ = model.fit(np.ones((8, 2)), np.ones(8), batch_size=4, epochs=1, verbose=0,
        ...               callbacks=[monitor])
        >>> sorted(k for k in monitor.records[0] if k.startswith("gradient_norm"))
        ['gradient_norm/global', 'gradient_norm/out']

    References: the update-to-weight ratio heuristic is from Karpathy's CS231n
    notes ("Neural Networks Part 3: Learning and Evaluation").
    """

    def __init__(
        self,
        log_dir=None,
        log_every_n_steps=10,
        gradient_norms=True,
        update_ratios=True,
        hyperparameters=True,
        spike_factor=3.0,
        spike_window=20,
        on_spike="warn",
        batch_loss="running_mean",
    ):
        super().__init__()
        if log_dir is not None:
            check_type("log_dir", log_dir, (str, os.PathLike))
            if not str(log_dir):
                raise ValueError(f"Argument `log_dir` must not be empty. Received: log_dir={log_dir!r}")
        check_positive("log_every_n_steps", log_every_n_steps, integer=True)
        check_bool("gradient_norms", gradient_norms)
        check_bool("update_ratios", update_ratios)
        check_bool("hyperparameters", hyperparameters)
        check_number("spike_factor", spike_factor, minimum=1.0, min_inclusive=False)
        check_number("spike_window", spike_window, minimum=2, integer=True)
        check_in("on_spike", on_spike, ("warn", "stop", "ignore"))
        check_in("batch_loss", batch_loss, ("running_mean", "per_batch"))
        self.log_dir = None if log_dir is None else str(log_dir)
        self.log_every_n_steps = int(log_every_n_steps)
        self.gradient_norms = gradient_norms
        self.update_ratios = update_ratios
        self.hyperparameters = hyperparameters
        self.spike_factor = float(spike_factor)
        self.spike_window = int(spike_window)
        self.on_spike = on_spike
        self.batch_loss = batch_loss
        self._writer = None
        self._reset_state()

    def _reset_state(self):
        self.records = []
        self.spikes = []
        self.stopped_reason = None
        self._steps = StepCount()
        self._epoch = 0
        self._longest_call = None  # the most steps one call has run (steps_per_execution)
        self._previous_count = 0
        self._previous_mean = None
        self._tracked = TrackedBatchLoss()
        self._window = collections.deque(maxlen=self.spike_window)
        self._non_finite_epoch = None
        self._recorder = None
        self._before = None

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        self._reset_state()
        if self.gradient_norms:
            self._recorder = _GradientNormRecorder(name="training_monitor_gradient_norms")
            control.attach_transforms(self.model, self, [self._recorder], first=True)
        if self.log_dir:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_train_end(self, logs=None):
        if self.gradient_norms:
            control.detach_transforms(self.model, self)
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._steps.begin_epoch()
        self._previous_count = 0
        self._previous_mean = None
        self._tracked.begin_epoch()

    @property
    def step(self) -> int:
        """Training steps done in the run (counted from the batch index)."""
        return self._steps.step

    def _due(self, before, after):
        return reaches_multiple(before, after, self.log_every_n_steps)

    def on_train_batch_begin(self, batch, logs=None):
        # Keras calls the batch hooks once per `steps_per_execution` steps; the first call is
        # assumed to reach a record (the call's length is not known before it ends).
        start = self._steps.before_batch(batch)
        if self.update_ratios and (self._longest_call is None or self._due(start, start + self._longest_call)):
            sync_model_state(self.model)
            self._before = [keras.ops.convert_to_numpy(v).astype(np.float64)
                            for v in self.model.trainable_variables]

    def on_train_batch_end(self, batch, logs=None):
        if self._recorder is not None and self.step == 0:
            if control.warn_if_unused(self.model, self):
                self._recorder = None  # its norms would be stale zeros
        before = self._steps.end_batch(batch, (self.params or {}).get("steps"))
        self._longest_call = max(self._longest_call or 0, self.step - before)
        loss = self._batch_loss(logs or {}, self.step - self._steps.epoch_first)
        if loss is not None:
            self._check_spike(loss)
        if self._due(before, self.step):
            record = {"step": self.step, "epoch": self._epoch}
            if loss is not None:
                record["loss/batch"] = loss
            record.update(self._gradient_record())
            record.update(self._update_record())
            if self.hyperparameters:
                record.update(self._hyperparameter_record())
            self.records.append(record)
            self._write(record)
        self._before = None

    # ------------------------------------------------------------ measurements
    def _batch_loss(self, logs, count):
        """The mean loss of the call's batches: from the loss tracker, else from the running
        means ``m`` after ``count`` and after the previous call's steps of the epoch:
        ``(c m_c - c' m_c') / (c - c')``."""
        value = to_float(logs.get("loss"))
        if self.batch_loss == "per_batch":
            return value
        tracked = self._tracked.read(self.model)
        if tracked is not None:
            return tracked
        if value is None:
            return None
        previous, self._previous_mean = self._previous_mean, value
        previous_count, self._previous_count = self._previous_count, count
        if previous is None or previous_count == 0 or count <= previous_count:
            return value
        if not (math.isfinite(previous) and math.isfinite(value)):
            return value
        return (count * value - previous_count * previous) / (count - previous_count)

    def _check_spike(self, loss):
        history = list(self._window)
        median = float(np.median(history)) if len(history) >= max(2, self.spike_window // 2) else None
        if not math.isfinite(loss):
            # The running mean stays non-finite for the rest of the epoch: report once.
            if self._non_finite_epoch == self._epoch:
                return
            self._non_finite_epoch = self._epoch
        elif median is None or loss <= self.spike_factor * median:
            self._window.append(loss)
            return
        self.spikes.append({"step": self.step, "epoch": self._epoch, "loss": loss, "median": median})
        message = (f"TrainingMonitor: loss spike at step {self.step} (epoch {self._epoch + 1}): batch loss "
                   f"{loss:.6g} vs median {median if median is None else f'{median:.6g}'} of the last "
                   f"{len(history)} batches (spike_factor={self.spike_factor:g}).")
        if self.on_spike == "ignore":
            return
        logger.warning(message)
        if self.on_spike == "stop":
            self.stopped_reason = "loss_spike"
            self._stop()

    def _gradient_record(self):
        if self._recorder is None or not self._recorder.built:
            return {}
        sync_model_state(self.model)
        norms = keras.ops.convert_to_numpy(self._recorder.norms).astype(np.float64)
        squares = collections.OrderedDict()
        for variable, norm in zip(self.model.trainable_variables, norms):
            layer = _layer_name(variable, self.model.name)
            squares[layer] = squares.get(layer, 0.0) + float(norm) ** 2
        record = {f"gradient_norm/{layer}": math.sqrt(s) for layer, s in squares.items()}
        record["gradient_norm/global"] = math.sqrt(sum(squares.values()))
        return record

    def _update_record(self):
        if self._before is None:
            return {}
        sync_model_state(self.model)
        deltas, weights = collections.OrderedDict(), collections.OrderedDict()
        for variable, before in zip(self.model.trainable_variables, self._before):
            after = keras.ops.convert_to_numpy(variable).astype(np.float64)
            layer = _layer_name(variable, self.model.name)
            deltas[layer] = deltas.get(layer, 0.0) + float(np.sum((after - before) ** 2))
            weights[layer] = weights.get(layer, 0.0) + float(np.sum(before ** 2))
        record = {f"update_ratio/{layer}": math.sqrt(deltas[layer]) / (math.sqrt(weights[layer]) + _EPS)
                  for layer in deltas}
        record["update_ratio/global"] = math.sqrt(sum(deltas.values())) / (math.sqrt(sum(weights.values())) + _EPS)
        return record

    def _hyperparameter_record(self):
        leaves = control.model_leaf_optimizers(self.model)
        record = {}
        for leaf in leaves:
            prefix = "optimizer/" if len(leaves) == 1 else f"optimizer/{leaf.name}/"
            record.update(_leaf_hyperparameters(leaf, prefix))
        return record

    def _write(self, record):
        if self._writer is None:
            return
        import tensorflow as tf

        with self._writer.as_default(step=self.step):
            for key, value in record.items():
                if key not in ("step", "epoch") and value is not None:
                    tf.summary.scalar(key, value)

    def get_config(self):
        return {
            "log_dir": self.log_dir,
            "log_every_n_steps": self.log_every_n_steps,
            "gradient_norms": self.gradient_norms,
            "update_ratios": self.update_ratios,
            "hyperparameters": self.hyperparameters,
            "spike_factor": self.spike_factor,
            "spike_window": self.spike_window,
            "on_spike": self.on_spike,
            "batch_loss": self.batch_loss,
        }
