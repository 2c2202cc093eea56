"""``ReduceLROnPlateau`` that also works when the learning rate is a schedule."""

from __future__ import annotations

import logging

import numpy as np

from keras_trainkit.callbacks._monitor import MonitorBase
from keras_trainkit.callbacks._registry import register
from keras_trainkit.optimizers import control
from keras_trainkit.utils.validation import check_in, check_non_negative, check_number

logger = logging.getLogger(__name__)

_THRESHOLD_MODES = {"rel": "relative", "abs": "absolute"}
_STATE_KEYS = ("wait", "best", "cooldown_counter")


@register
class ReduceLROnPlateau(MonitorBase):
    """Multiply the learning rate by ``factor`` when a monitored quantity stops improving.

    Unlike ``keras.callbacks.ReduceLROnPlateau`` (which raises ``TypeError`` as
    soon as the optimizer uses a schedule) this works whether the learning rate
    is a float, a ``LearningRateSchedule`` / callable, or a per-layer set
    (``keras.optimizers.MultiOptimizer``; wrappers with ``inner_optimizer`` are
    reached through).

    Formula: at the end of each epoch, after ``patience`` epochs without an
    improvement of the monitored value ``q`` over its best ``q*`` (``mode="min"``:
    ``q < q* - min_delta`` with ``threshold_mode="abs"``, ``q < q* - min_delta *
    |q*|`` with ``"rel"``; mirrored for ``"max"``) and outside a cooldown:

    * float learning rate: ``lr <- max(lr * factor, min_lr)`` (the optimizer's
      learning-rate variable, as Keras does);
    * schedule ``s``: the optimizer's learning rate becomes
      ``lr(t) = scale * s(t)`` (a :class:`keras_trainkit.schedules.ScaledSchedule`
      installed at ``on_train_begin``) and ``scale <- scale * factor``, so the
      schedule keeps its shape. ``min_lr`` bounds the effective rate at the
      step of the reduction: ``scale`` is lowered at most to
      ``min_lr / s(t)``; the schedule's own later decay may go below it.

    Nothing is reduced once the effective rate is ``<= min_lr``. A float rate
    it lowered must stay as it set it: when another callback sets it too
    (Keras's ``LearningRateScheduler``, ``HyperparameterScheduler("learning_rate")``,
    SWA's annealing), every reduction would be undone, so the next epoch end
    raises a ``ValueError`` naming both rates. The patience
    and cooldown counting follows Keras (``wait >= patience``); torch reduces
    one epoch later (``num_bad_epochs > patience``). The current learning
    rate is logged as ``learning_rate`` (``learning_rate_<name>`` for each
    optimizer of a per-layer set).

    State: ``wait``, ``best`` and ``cooldown_counter`` are reset in
    ``on_train_begin`` (one instance can serve several ``fit`` calls) unless
    :meth:`set_state` loaded them just before; :meth:`get_state` returns them
    as a JSON-serializable dict. The accumulated scale is optimizer-side: the
    float learning-rate variable, or the ``ScaledSchedule``'s scale, written
    into the optimizer config, so ``model.save``/``load_model`` keep it and a
    new callback reuses it; the ``Trainer``'s ``checkpoint_dir`` and a tuning
    trial's checkpoints save the scale beside the variables
    (``control.learning_rate_scales``). ``keras.callbacks.BackupAndRestore``
    saves only the variables: under ``model.fit`` a run it resumes with a
    schedule logs a warning (a reduction made before the interruption is lost);
    the ``Trainer`` refuses that combination before training.

    Args:
        monitor: the log key to watch, e.g. ``"val_loss"``.
        factor: multiplier in ``(0, 1)``.
        patience: epochs without improvement before a reduction (>= 0).
        verbose: 0 quiet, 1 prints a message at each reduction.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        min_delta: improvement threshold (>= 0), read per ``threshold_mode``.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: lower bound on the learning rate (>= 0).
        threshold_mode: ``"abs"`` (Keras's rule, default) or ``"rel"`` (torch's
            default: relative to ``|best|``).

    Example:
        >>> import keras
        >>> from keras_trainkit.callbacks import ReduceLROnPlateau
        >>> schedule = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=1000)
        >>> optimizer = keras.optimizers.SGD(schedule)  # Keras's callback refuses this
        >>> callback = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2)
        >>> callback.factor
        0.5

    No paper: the heuristic of Keras's and torch's ``ReduceLROnPlateau``.
    """

    def __init__(
        self,
        monitor="val_loss",
        factor=0.1,
        patience=10,
        verbose=0,
        mode="auto",
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
        threshold_mode="abs",
    ):
        check_in("threshold_mode", threshold_mode, tuple(_THRESHOLD_MODES))
        super().__init__(
            monitor=monitor,
            mode=mode,
            min_delta=min_delta,
            min_delta_mode=_THRESHOLD_MODES[threshold_mode],
        )
        check_number("factor", factor, minimum=0.0, maximum=1.0, min_inclusive=False,
                     max_inclusive=False, hint="A factor >= 1 would not reduce the learning rate")
        check_non_negative("patience", patience, integer=True)
        check_non_negative("verbose", verbose, integer=True)
        check_non_negative("cooldown", cooldown, integer=True)
        check_non_negative("min_lr", min_lr)
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = int(verbose)
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self.threshold_mode = threshold_mode
        self._pending_state = None
        self._warned = set()
        self._reset()

    # -- state ----------------------------------------------------------------

    def _reset(self):
        self.wait = 0
        self.best = None
        self.cooldown_counter = 0

    def get_state(self) -> dict:
        """``{"wait", "best", "cooldown_counter"}`` as plain Python values (JSON-safe)."""
        return {"wait": self.wait, "best": self.best, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state: dict) -> None:
        """Load :meth:`get_state` output; the next ``on_train_begin`` keeps it (resume)."""
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise ValueError(
                f"Argument `state` must hold {', '.join(_STATE_KEYS)}; missing "
                f"{', '.join(missing)}. Received: state={state!r}"
            )
        self.wait = int(state["wait"])
        self.best = None if state["best"] is None else float(state["best"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self._pending_state = self.get_state()

    def in_cooldown(self) -> bool:
        """Whether a reduction happened less than ``cooldown`` epochs ago."""
        return self.cooldown_counter > 0

    # -- optimizer side -------------------------------------------------------

    def _handles(self):
        try:
            return control.learning_rate_handles(self.model)
        except ValueError:
            raise ValueError(
                "ReduceLROnPlateau needs a compiled model with an optimizer. "
                f"Received: model.optimizer={getattr(self.model, 'optimizer', None)!r}"
            ) from None

    def _install_scales(self) -> None:
        """Make every schedule-driven learning rate scalable (once), then retrace."""
        changed = [handle.make_scalable() for handle in self._handles()]
        if any(changed):
            # A train function traced before this still reads the bare schedule.
            control.retrace(self.model)

    def _reduce(self, handle, epoch) -> bool:
        current = handle.value()
        if not current > np.float32(self.min_lr):
            return False
        new = handle.scale(self.factor, minimum=self.min_lr)
        if not handle.is_schedule:
            self._lowered[handle.optimizer.name] = (epoch, handle.value())
        message = (f"Epoch {epoch + 1}: ReduceLROnPlateau reducing the learning rate of "
                   f"{handle.optimizer.name} from {current:.4g} to {new:.4g}.")
        logger.info(message)
        if self.verbose:
            print("\n" + message)
        return True

    def _check_rates_kept(self, handles, rates, epoch):
        """Refuse to go on when a float rate this callback lowered was set to another value since
        (``rates``: each handle's rate now): another callback sets it too (it would undo every
        reduction, silently)."""
        for handle, current in zip(handles, rates):
            lowered = self._lowered.get(handle.optimizer.name)
            if lowered is None or handle.is_schedule:
                continue
            when, rate = lowered
            if not np.isclose(current, rate, rtol=1e-6, atol=0.0):
                raise ValueError(
                    f"ReduceLROnPlateau lowered the learning rate of {handle.optimizer.name} to {rate:.6g} "
                    f"at the end of epoch {when + 1}, but at the end of epoch {epoch + 1} it was "
                    f"{current:.6g}: another callback sets it too (keras.callbacks.LearningRateScheduler, "
                    "HyperparameterScheduler('learning_rate'), SWA's annealing) and would undo every "
                    "reduction. Let one callback control the learning rate (a schedule can be reduced: "
                    f"give the optimizer a LearningRateSchedule). Received: learning_rate={current!r}")

    # -- hooks ----------------------------------------------------------------

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._pending_state is None:
            self._reset()
        self._pending_state = None
        if self.mode == "auto":
            self._lower_is_better = None
        self._warned = set()
        self._install_scales()
        self._lowered = {}  # leaf optimizer name -> (epoch, the float rate a reduction set)

    def on_first_epoch_begin(self, epoch):
        """Warn when ``keras.callbacks.BackupAndRestore`` set the first epoch while a schedule's
        scale is 1: its backup holds the optimizer's variables, not the scale, so a reduction
        made before the interruption is lost (a scale below 1 came from this process or a
        loaded model's config and is kept)."""
        if not self._resumed_by_backup(epoch):
            return
        if not any(scale == 1.0 for scale in control.learning_rate_scales(self.model)):
            return
        logger.warning(
            "ReduceLROnPlateau: keras.callbacks.BackupAndRestore resumed training at epoch %d with "
            "the model and optimizer variables it saved, but a reduction of a learning-rate schedule "
            "is a scale kept outside them (ScaledSchedule), so a reduction made before the "
            "interruption is lost and this run trains at the schedule's full rate. For an exact "
            "resume train with keras_trainkit.training.Trainer(...).fit(checkpoint_dir=...), whose "
            "checkpoints save the scale, or use a float learning rate.", epoch)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        handles = self._handles()
        rates = [handle.value() for handle in handles]  # one read each, for the check and the logs
        self._check_rates_kept(handles, rates, epoch)
        if len(handles) == 1:
            logs["learning_rate"] = rates[0]
        else:
            for handle, rate in zip(handles, rates):
                logs[f"learning_rate_{handle.optimizer.name}"] = rate
        current = self._monitor_value(logs, self._warned)
        if current is None:
            return
        self._resolve_direction()
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                reduced = [self._reduce(handle, epoch) for handle in handles]
                if any(done and handle.is_schedule for done, handle in zip(reduced, handles)):
                    control.assigned_outside_state(self.model)  # JAX froze the scale into its step
                if any(reduced):
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def get_config(self):
        return {
            "monitor": self.monitor,
            "factor": self.factor,
            "patience": self.patience,
            "verbose": self.verbose,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "cooldown": self.cooldown,
            "min_lr": self.min_lr,
            "threshold_mode": self.threshold_mode,
        }
