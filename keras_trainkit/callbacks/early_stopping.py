"""Early stopping with Keras's arguments plus targets, divergence, NaN checks and Prechelt's criteria."""

from __future__ import annotations

import logging
import math

import keras

from keras_trainkit.callbacks._monitor import (
    MonitorBase,
    StepCount,
    _direction_from_metrics,
    check_optional_number,
    reaches_multiple,
    sync_model_state,
)
from keras_trainkit.callbacks._registry import register
from keras_trainkit.optimizers import control
from keras_trainkit.utils.checkpoints import variable_arrays
from keras_trainkit.utils.non_finite import all_finite, is_finite
from keras_trainkit.utils.validation import check_bool
from keras_trainkit.utils.values import to_float
from keras_trainkit.utils.validation import check_condition, check_non_negative, check_positive, check_type

logger = logging.getLogger(__name__)

#: Values ``stopped_reason`` can take, with what each means.
REASONS = {
    "patience": "no improvement for `patience` checks",
    "target": "the monitored value reached `target`",
    "divergence": "the monitored value crossed `divergence_threshold`",
    "non_finite": "a NaN or Inf was logged",
    "GL": "Prechelt's generalization loss GL exceeded `GL_alpha`",
    "PQ": "Prechelt's quotient GL/P_k exceeded `PQ_alpha`",
    "UP": "the validation error rose in `UP_s` successive strips",
}


def generalization_loss(value: float, best: float) -> float:
    """Prechelt's generalization loss ``GL(t) = 100 * (E_va(t) / E_opt(t) - 1)``.

    ``best`` is ``E_opt(t)``, the lowest validation error up to ``t``; both
    errors must be positive.

    Example:
        >>> generalization_loss(1.1, 1.0)
        10.000000000000009
    """
    return 100.0 * (value / best - 1.0)


def training_progress(strip) -> float:
    """Prechelt's training progress over a strip of ``k`` training errors.

    ``P_k(t) = 1000 * (sum(strip) / (k * min(strip)) - 1)``: how much larger
    the strip's mean training error is than its minimum, in per mille.

    Example:
        >>> round(training_progress([1.2, 1.1, 1.0]), 6)
        100.0
    """
    strip = [float(s) for s in strip]
    return 1000.0 * (sum(strip) / (len(strip) * min(strip)) - 1.0)


@register
class EarlyStopping(MonitorBase):
    """Stop training when a monitored quantity stops improving, reaches a target,
    diverges, turns NaN, or meets one of Prechelt's (1998) criteria.

    A superset of ``keras.callbacks.EarlyStopping``: with only Keras's
    arguments it decides exactly as Keras does (counter ``wait`` of checks
    without improvement; stop when ``wait >= patience``). The extra criteria
    are combined with "or": training stops as soon as any holds, and
    ``stopped_reason`` names it (one of :data:`REASONS`); a log line says why.

    Prechelt's criteria (for errors, so ``mode`` must resolve to ``"min"``, or
    a ``ValueError`` is raised;
    ``t`` counts checks, an epoch unless ``check_every_n_steps`` is set;
    ``E_va`` is the monitored value, ``E_tr`` the ``training_monitor`` value):

    * ``GL(t) = 100 * (E_va(t) / E_opt(t) - 1)`` with ``E_opt(t) = min_{t'<=t}
      E_va(t')``; ``GL_alpha``: stop as soon as ``GL(t) > GL_alpha``.
    * ``P_k(t) = 1000 * (sum_{t'=t-k+1}^{t} E_tr(t') / (k * min_{t'} E_tr(t')) - 1)``
      over a strip of ``k = strip_length`` checks; ``PQ_alpha``: at the end of
      a strip (``t`` a multiple of ``k``) stop when ``GL(t) / P_k(t) > PQ_alpha``.
    * ``UP_s``: at the end of a strip, stop when ``E_va`` has risen from one
      strip end to the next (``E_va(t) > E_va(t - k)``) ``UP_s`` times in a row.

    ``check_finite`` watches the batch loss at every batch, the monitored value
    at every check and the weights at every epoch end (NaN gradients with a
    finite loss, as when oneDNN's fused ReLU zeroes a NaN input, show only
    there): a NaN or Inf stops training at once and restores the best weights
    seen so far (or those at the start of training if no check has passed)
    *and the optimizer's state with them* (its slots would hold NaN too),
    whatever ``restore_best_weights`` says. To do so the callback keeps a host
    copy of the best weights whenever ``restore_best_weights`` or
    ``check_finite`` is set, and of the optimizer's variables too when
    ``check_finite`` or ``restore_optimizer_state`` is set (the optimizer is
    built at ``on_train_begin`` so that its slots are in the first copy). If
    the optimizer's variables cannot be put back (it gained variables since
    the copy), the non-finite ones are reset to zero and a warning says so.

    Args:
        monitor: the log key to watch. Default ``"val_loss"``.
        min_delta: the smallest change counting as an improvement (>= 0).
        patience: checks without improvement before stopping (>= 0).
        verbose: 0 logs the stop at INFO level, 1 at WARNING level (shown by
            default). Nothing is printed.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        baseline: as in Keras: ``wait`` resets only on improvements that also
            beat the baseline.
        restore_best_weights: restore the best check's weights at the end
            (nothing when no check ran, as in Keras).
        start_from_epoch: epochs to train before checking starts.
        min_delta_mode: ``"absolute"`` (Keras's rule) or ``"relative"``: an
            improvement must beat ``best`` by ``min_delta * |best|``.
        target: stop once the monitored value is at least this good.
        divergence_threshold: stop once the monitored value is worse than this.
        check_finite: stop at once on a NaN/Inf loss, monitored value or
            weight and restore the best weights and optimizer state.
        GL_alpha: threshold for Prechelt's GL criterion (percent, > 0).
        PQ_alpha: threshold for Prechelt's PQ criterion (> 0).
        UP_s: number of successive rising strips for Prechelt's UP criterion.
        strip_length: Prechelt's strip length ``k`` (default 5).
        training_monitor: the log key of the training error ``E_tr`` used by PQ.
        restore_optimizer_state: also restore the optimizer's variables (slots,
            iteration counter and a float learning rate, which is then the best
            check's even where ``ReduceLROnPlateau`` lowered it since) from the
            best check when weights are restored;
            under a ``Trainer`` also its gradient transforms' state (AutoClip's
            history), partial gradient sum and skip count, so that a later
            ``fit`` continues as a run stopped at the best check would.
        check_every_n_steps: check every this many training steps (counted from
            the batch index, so also with ``steps_per_execution``; reading the
            batch logs, which in ``model.fit`` hold the epoch's running means and
            no ``val_*`` keys) instead of at each epoch end. The check runs at the
            end of the batch call whose steps reach a multiple; a call of
            ``steps_per_execution`` steps that passes two multiples checks once,
            as it has one set of logs.

    Example:
        >>> import keras, numpy as np
        >>> stop = EarlyStopping(monitor="loss", patience=2, GL_alpha=5.0)
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile("sgd", "mse")
        >>> _ = model.fit(np.ones((8, 2)), np.ones(8), epochs=3, verbose=0, callbacks=[stop])

    Reference:
        L. Prechelt, "Early Stopping - But When?", in Neural Networks: Tricks of
        the Trade, 1998.
    """

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0.0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
        min_delta_mode="absolute",
        target=None,
        divergence_threshold=None,
        check_finite=True,
        GL_alpha=None,
        PQ_alpha=None,
        UP_s=None,
        strip_length=5,
        training_monitor="loss",
        restore_optimizer_state=False,
        check_every_n_steps=None,
    ):
        super().__init__(monitor=monitor, mode=mode, min_delta=min_delta, min_delta_mode=min_delta_mode)
        check_non_negative("patience", patience, integer=True)
        check_non_negative("verbose", verbose, integer=True)
        check_optional_number("baseline", baseline)
        check_bool("restore_best_weights", restore_best_weights)
        check_non_negative("start_from_epoch", start_from_epoch, integer=True)
        check_optional_number("target", target)
        check_optional_number("divergence_threshold", divergence_threshold)
        check_bool("check_finite", check_finite)
        if GL_alpha is not None:
            check_positive("GL_alpha", GL_alpha)
        if PQ_alpha is not None:
            check_positive("PQ_alpha", PQ_alpha)
        if UP_s is not None:
            check_positive("UP_s", UP_s, integer=True)
        check_positive("strip_length", strip_length, integer=True)
        check_type("training_monitor", training_monitor, str)
        check_bool("restore_optimizer_state", restore_optimizer_state)
        if check_every_n_steps is not None:
            check_positive("check_every_n_steps", check_every_n_steps, integer=True)
        prechelt = GL_alpha is not None or PQ_alpha is not None or UP_s is not None
        check_condition(
            "mode", mode, not (prechelt and mode == "max"),
            "must be 'min' or 'auto' with Prechelt's criteria (they are defined for errors)",
        )
        if target is not None and divergence_threshold is not None and mode != "auto":
            lower = mode == "min"
            ok = target < divergence_threshold if lower else target > divergence_threshold
            check_condition(
                "divergence_threshold", divergence_threshold, ok,
                f"must be worse than `target`={target!r} in mode={mode!r}",
            )
        self.patience = int(patience)
        self.verbose = int(verbose)
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = int(start_from_epoch)
        self.target = None if target is None else float(target)
        self.divergence_threshold = None if divergence_threshold is None else float(divergence_threshold)
        self.check_finite = check_finite
        self.GL_alpha = None if GL_alpha is None else float(GL_alpha)
        self.PQ_alpha = None if PQ_alpha is None else float(PQ_alpha)
        self.UP_s = None if UP_s is None else int(UP_s)
        self.strip_length = int(strip_length)
        self.training_monitor = training_monitor
        self.restore_optimizer_state = restore_optimizer_state
        self.check_every_n_steps = None if check_every_n_steps is None else int(check_every_n_steps)
        self._reset_state()

    # ------------------------------------------------------------------ state
    def _reset_state(self):
        self.wait = 0
        self.best = None
        self.best_epoch = None
        self.best_step = None
        self.best_weights = None
        self.best_optimizer_state = None
        self.stopped_epoch = None
        self.stopped_step = None
        self.stopped_reason = None
        self.stopped_message = None
        self.history = []  # (epoch, step, E_va, E_tr, GL) per check
        self._epoch = 0
        self._steps = StepCount()
        self._checks = 0
        self._up_count = 0
        self._e_opt = None
        self._warned = set()

    def on_train_begin(self, logs=None):
        self._reset_state()
        self._lower_is_better = None
        if self.mode == "auto" and _direction_from_metrics(self.model, self.monitor) == "up":
            self._refuse_prechelt_upward()
        if self.check_finite:
            control.build_optimizer(self.model)
            self._snapshot()

    @property
    def _step(self) -> int:
        return self._steps.step

    def _keep_weights(self):
        return self.restore_best_weights or self.check_finite

    def _keep_optimizer_state(self):
        return (self.restore_optimizer_state or self.check_finite) and \
            getattr(self.model, "optimizer", None) is not None

    def _snapshot(self):
        self.best_weights = self.model.get_weights()
        if self._keep_optimizer_state():
            # Kept with the variables themselves: a wrapper that another callback puts
            # around the optimizer (GradientClipping) may be gone again when they are restored.
            variables = self._optimizer_state_variables()
            self.best_optimizer_state = list(zip(variables, variable_arrays(variables)))

    def _optimizer_state_variables(self):
        """The training state beside the model's own: the optimizer's variables and, under a
        ``Trainer``, its gradient transforms' state, partial gradient sum and skip count."""
        model_variables = {id(v) for v in control.model_state_variables(self.model)}
        return [v for v in control.training_state_variables(self.model) if id(v) not in model_variables]

    def _restore(self, optimizer_too=None):
        """Put back the kept weights and, with ``optimizer_too`` (default: ``restore_optimizer_state``), the
        optimizer's state."""
        if self.best_weights is None:
            return
        self.model.set_weights(self.best_weights)
        optimizer_too = self.restore_optimizer_state if optimizer_too is None else optimizer_too
        if not optimizer_too or getattr(self.model, "optimizer", None) is None:
            return
        kept = self.best_optimizer_state or []
        for variable, value in kept:
            variable.assign(value)
        restored = {id(variable) for variable, _ in kept}
        missing = [v for v in self._optimizer_state_variables() if id(v) not in restored]
        if not missing:
            return
        reset = [v.path for v in missing if not is_finite(keras.ops.convert_to_numpy(v))]
        for variable in missing:
            if variable.path in reset:
                variable.assign(keras.ops.zeros_like(variable))
        logger.warning(
            "EarlyStopping: %d of the optimizer's variables could not be restored (they were made "
            "after the copy); the non-finite ones were reset to zero: %s.",
            len(missing), ", ".join(reset) or "none",
        )

    # ------------------------------------------------------------------ hooks
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._steps.begin_epoch()

    def on_train_batch_end(self, batch, logs=None):
        before = self._steps.end_batch(batch, (self.params or {}).get("steps"))
        logs = logs or {}
        if self.check_finite:
            loss = to_float(logs.get("loss"))
            if loss is not None and not math.isfinite(loss):
                self._halt("non_finite", f"loss={loss} at epoch {self._epoch + 1}, step {self._step}")
                return
        every = self.check_every_n_steps
        if every and reaches_multiple(before, self._step, every):
            if self._epoch >= self.start_from_epoch:
                self._check(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch
        if self.stopped_reason is None and self.check_finite and not bool(
                keras.ops.convert_to_numpy(all_finite(self.model.trainable_variables))):
            self._halt("non_finite", f"the weights held NaN or Inf at the end of epoch {epoch + 1} (NaN "
                                     "gradients with a finite loss)")
            return
        if self.stopped_reason is not None or self.check_every_n_steps:
            if self.stopped_reason is None and self.check_finite:
                value = to_float((logs or {}).get(self.monitor))
                if value is not None and not math.isfinite(value):
                    self._halt("non_finite", f"{self.monitor}={value} at epoch {epoch + 1}")
            return
        if epoch < self.start_from_epoch:
            return
        self._check(logs)

    def on_train_end(self, logs=None):
        if self.stopped_reason == "non_finite":
            return  # already restored
        if self.restore_best_weights and self.best is not None and self.best_weights is not None:
            logger.info("EarlyStopping: restoring the weights of the best check (epoch %s).",
                        None if self.best_epoch is None else self.best_epoch + 1)
            self._restore()

    # ------------------------------------------------------------------ logic
    def _check(self, logs):
        """One check: update the best value and test every criterion."""
        sync_model_state(self.model)  # JAX: a check between epochs reads and may restore weights
        self._resolve_direction()
        if not self._lower_is_better:
            self._refuse_prechelt_upward()
        current = self._monitor_value(logs, self._warned)
        if current is None:
            return
        if self.check_finite and not math.isfinite(current):
            self._halt("non_finite", f"{self.monitor}={current} at epoch {self._epoch + 1}")
            return
        self._checks += 1
        train_value = to_float((logs or {}).get(self.training_monitor))
        first = self.best is None
        if self._keep_weights() and self.best_weights is None:
            self._snapshot()

        self.wait += 1
        improved = self._is_improvement(current, self.best)
        if improved:
            self.best = current
            self.best_epoch = self._epoch
            self.best_step = self._step
            if self._keep_weights():
                self._snapshot()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0

        self._e_opt = current if self._e_opt is None else min(self._e_opt, current)
        gl = None
        if self._e_opt > 0 and self._lower_is_better:
            gl = generalization_loss(current, self._e_opt)
        previous_strip_end = self._value_at_check(self._checks - self.strip_length)
        self.history.append((self._epoch, self._step, current, train_value, gl))

        reason = self._criteria(current, gl, improved, first, previous_strip_end)
        if reason is not None:
            self._halt(*reason)

    def _value_at_check(self, index):
        """The monitored value at check number ``index`` (1-based), if recorded."""
        if index < 1 or index > len(self.history):
            return None
        return self.history[index - 1][2]

    def _criteria(self, current, gl, improved, first, previous_strip_end):
        where = f"epoch {self._epoch + 1}" + (
            f", step {self._step}" if self.check_every_n_steps else ""
        )
        if self.target is not None and self._reached(current, self.target):
            return "target", f"{self.monitor}={current:.6g} reached target={self.target:.6g} at {where}"
        if self.divergence_threshold is not None and self._worse_than(current, self.divergence_threshold):
            return ("divergence", f"{self.monitor}={current:.6g} crossed divergence_threshold="
                    f"{self.divergence_threshold:.6g} at {where}")
        if self.GL_alpha is not None and gl is not None and gl > self.GL_alpha:
            return "GL", f"GL={gl:.4g} > GL_alpha={self.GL_alpha:g} at {where}"
        end_of_strip = self._checks % self.strip_length == 0
        if end_of_strip and self.PQ_alpha is not None and gl is not None:
            strip = [h[3] for h in self.history[-self.strip_length:]]
            if all(s is not None and s > 0 for s in strip):
                progress = training_progress(strip)
                quotient = gl / progress if progress > 0 else (math.inf if gl > 0 else 0.0)
                if quotient > self.PQ_alpha:
                    return ("PQ", f"GL/P_{self.strip_length}={gl:.4g}/{progress:.4g}={quotient:.4g} "
                            f"> PQ_alpha={self.PQ_alpha:g} at {where}")
            elif self.training_monitor not in self._warned:
                self._warned.add(self.training_monitor)
                logger.warning("EarlyStopping: PQ needs positive `%s` in the logs.", self.training_monitor)
        if end_of_strip and self.UP_s is not None and previous_strip_end is not None:
            self._up_count = self._up_count + 1 if current > previous_strip_end else 0
            if self._up_count >= self.UP_s:
                return ("UP", f"{self.monitor} rose in {self._up_count} successive strips of "
                        f"{self.strip_length} (UP_s={self.UP_s}) at {where}")
        if not improved and self.wait >= self.patience and not first:
            return ("patience", f"no improvement of {self.monitor} in {self.wait} checks "
                    f"(patience={self.patience}); best {self.best:.6g} at epoch {self.best_epoch + 1}")
        return None

    def _refuse_prechelt_upward(self):
        """Prechelt's criteria are defined for errors: a quantity that goes up is refused."""
        if self.GL_alpha is not None or self.PQ_alpha is not None or self.UP_s is not None:
            raise ValueError(
                "Argument `mode` must resolve to 'min' with Prechelt's criteria (GL_alpha, PQ_alpha, "
                f"UP_s are defined for errors), but `{self.monitor}` goes up: monitor an error or "
                f"loss, or drop those criteria. Received: mode={self.mode!r}, monitor={self.monitor!r}")

    def _halt(self, reason, detail):
        self.stopped_reason = reason
        self.stopped_message = f"EarlyStopping stopped training ({reason}): {detail}."
        self.stopped_epoch = self._epoch
        self.stopped_step = self._step
        self._stop()
        logger.log(logging.WARNING if self.verbose or reason == "non_finite" else logging.INFO,
                   self.stopped_message)
        if reason == "non_finite":
            self._restore(optimizer_too=True)

    def get_config(self):
        return {
            "monitor": self.monitor,
            "min_delta": self.min_delta,
            "patience": self.patience,
            "verbose": self.verbose,
            "mode": self.mode,
            "baseline": self.baseline,
            "restore_best_weights": self.restore_best_weights,
            "start_from_epoch": self.start_from_epoch,
            "min_delta_mode": self.min_delta_mode,
            "target": self.target,
            "divergence_threshold": self.divergence_threshold,
            "check_finite": self.check_finite,
            "GL_alpha": self.GL_alpha,
            "PQ_alpha": self.PQ_alpha,
            "UP_s": self.UP_s,
            "strip_length": self.strip_length,
            "training_monitor": self.training_monitor,
            "restore_optimizer_state": self.restore_optimizer_state,
            "check_every_n_steps": self.check_every_n_steps,
        }
