"""Read the learning curves at the end of training and say what went wrong, with numbers."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

from keras_trainkit.callbacks._monitor import TrainkitCallback
from keras_trainkit.utils.values import to_float
from keras_trainkit.callbacks._registry import register
from keras_trainkit.utils.validation import check_number, check_positive, check_type

logger = logging.getLogger(__name__)

OVERFITTING = "overfitting"
UNDERFITTING = "underfitting"
LR_TOO_HIGH = "learning rate too high"
LR_TOO_LOW = "learning rate too low"

SUGGESTIONS = {
    OVERFITTING: "stop earlier (EarlyStopping with restore_best_weights), add regularization "
                 "(weight decay, dropout, data augmentation), or use a smaller model",
    UNDERFITTING: "use a larger model (more width or depth) or train longer",
    LR_TOO_HIGH: "lower the learning rate (try 3-10x smaller) or add warmup / gradient clipping",
    LR_TOO_LOW: "raise the learning rate (try 3-10x larger) or run an LR range test",
}

#: Default thresholds; every one is an argument of :class:`LearningCurveDiagnosis`.
DEFAULT_THRESHOLDS = {
    "min_epochs": 4,
    "overfit_tolerance": 0.05,
    "plateau_tolerance": 0.05,
    "rise_tolerance": 0.01,
    "underfit_fraction": 0.5,
    "underfit_gap": 0.1,
    "steady_ratio": 0.5,
    "slow_fraction": 0.5,
    "oscillation_fraction": 0.3,
    "explosion_factor": 10.0,
    "early_fraction": 1.0 / 3.0,
}


@dataclass
class Finding:
    """One diagnosis: its name, the evidence in numbers and a suggestion."""

    name: str
    evidence: dict = field(default_factory=dict)
    suggestion: str = ""

    def __str__(self):
        numbers = ", ".join(f"{k}={_fmt(v)}" for k, v in self.evidence.items())
        return f"{self.name}: {numbers}. Suggestion: {self.suggestion}."


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _mean_drop(values):
    """Average per-epoch decrease over ``values`` (positive when falling)."""
    if len(values) < 2:
        return 0.0
    return (values[0] - values[-1]) / (len(values) - 1)


def diagnose_learning_curves(loss, val_loss=None, initial_loss=None, **thresholds):
    """Diagnose per-epoch training (and validation) loss curves.

    With ``T`` epochs (nothing is said below ``min_epochs``), ``L`` the training
    and ``V`` the validation curve, ``L_init`` the loss before training
    (``initial_loss``, e.g. the first batch's loss; default ``L[0]``), a third
    ``m = max(1, T // 3)`` epochs, and ``r = mean drop of L over the last m
    epochs / mean drop over the first m epochs`` (0 when ``L`` did not drop over
    the first ``m``: there is no steady decrease to measure):

    * **learning rate too high** when a loss is NaN/Inf; or
      ``max(L) > explosion_factor * L_init`` (an early blow-up); or the
      training loss stops improving early: ``argmin(L) < early_fraction * T`` and
      ``L[-1] > min(L) * (1 + rise_tolerance)``; or it oscillates: at
      least ``oscillation_fraction`` of the epoch-to-epoch changes of ``L`` are
      increases.
    * **overfitting** when the validation loss rose while the training loss
      fell: ``b = argmin(V) < T - 1``, ``V[-1] > V[b] * (1 + overfit_tolerance)``,
      ``L[-1] < L[b]``, ``L[-1] <= min(L) * (1 + rise_tolerance)`` and the model
      fits its training data, ``L[-1] < underfit_fraction * L_init``.
    * **learning rate too low** for a slow, steady decrease: ``L`` falls
      (strictly) at >= 90% of the epochs, ``r >= steady_ratio`` (no slowing down) and
      ``L[-1] > slow_fraction * L_init``.
    * **underfitting** when both losses plateau high: the relative drop of
      ``L`` over the last ``m`` epochs is below ``plateau_tolerance``, ``r <
      steady_ratio``, ``L[-1] >= underfit_fraction * L_init`` and
      ``V[-1] <= L[-1] * (1 + underfit_gap)``.

    Args:
        loss: per-epoch training losses.
        val_loss: per-epoch validation losses, or ``None``.
        initial_loss: the loss before training; ``None`` uses ``loss[0]``.
        **thresholds: overrides of :data:`DEFAULT_THRESHOLDS`.

    Returns:
        A list of :class:`Finding` (empty when nothing looks wrong).

    Example:
        >>> [f.name for f in diagnose_learning_curves([2.3, 1.5, 1.0, 0.6, 0.3],
        ...                                          [2.2, 1.8, 1.9, 2.2, 2.6])]
        ['overfitting']
    """
    t = {**DEFAULT_THRESHOLDS, **thresholds}
    L = [float(v) for v in loss]
    V = [float(v) for v in val_loss] if val_loss else []
    T = len(L)
    findings = []
    if T < t["min_epochs"]:
        return findings
    non_finite = [i for i, v in enumerate(L + V) if not math.isfinite(v)]
    if non_finite:
        findings.append(Finding(LR_TOO_HIGH, {"first_non_finite_epoch": (non_finite[0] % T) + 1},
                                SUGGESTIONS[LR_TOO_HIGH]))
        return findings
    initial = float(initial_loss) if initial_loss is not None and math.isfinite(initial_loss) else L[0]
    m = max(1, T // 3)
    best_train = min(L)
    best_train_epoch = L.index(best_train)
    still_at_min = L[-1] <= best_train * (1 + t["rise_tolerance"])
    increases = sum(1 for a, b in zip(L, L[1:]) if b > a)
    increase_fraction = increases / (T - 1)
    first_drop = _mean_drop(L[: m + 1])
    last_drop = _mean_drop(L[-(m + 1):])
    # r is a steady decrease's measure: with no drop at first there is none to measure
    ratio = last_drop / first_drop if first_drop > 0 else 0.0

    evidence = {}
    if max(L) > t["explosion_factor"] * initial:
        evidence.update(max_train_loss=max(L), initial_loss=initial)
    if best_train_epoch < t["early_fraction"] * T and not still_at_min:
        evidence.update(best_train_epoch=best_train_epoch + 1, best_train_loss=best_train, final_train_loss=L[-1])
    if increase_fraction >= t["oscillation_fraction"]:
        evidence.update(train_loss_increases=f"{increases}/{T - 1}")
    if evidence:
        findings.append(Finding(LR_TOO_HIGH, evidence, SUGGESTIONS[LR_TOO_HIGH]))

    if len(V) == T:
        b = V.index(min(V))
        fits_training_data = L[-1] < t["underfit_fraction"] * initial
        if (b < T - 1 and V[-1] > V[b] * (1 + t["overfit_tolerance"]) and L[-1] < L[b] and still_at_min
                and fits_training_data):
            findings.append(Finding(OVERFITTING, {
                "best_val_epoch": b + 1, "best_val_loss": V[b], "final_val_loss": V[-1],
                "val_rise": V[-1] / V[b] - 1, "train_loss_at_best": L[b], "final_train_loss": L[-1],
            }, SUGGESTIONS[OVERFITTING]))

    falling = sum(1 for a, b in zip(L, L[1:]) if b < a) / (T - 1)  # strictly: a flat epoch is no fall
    if falling >= 0.9 and ratio >= t["steady_ratio"] and L[-1] > t["slow_fraction"] * initial:
        findings.append(Finding(LR_TOO_LOW, {
            "mean_drop_first_epochs": first_drop, "mean_drop_last_epochs": last_drop,
            "final_over_initial": L[-1] / initial,
        }, SUGGESTIONS[LR_TOO_LOW]))
    else:
        recent_drop = (L[-(m + 1)] - L[-1]) / abs(L[-(m + 1)]) if L[-(m + 1)] else 0.0
        gap_ok = len(V) != T or V[-1] <= L[-1] * (1 + t["underfit_gap"])
        if (recent_drop < t["plateau_tolerance"] and ratio < t["steady_ratio"]
                and L[-1] >= t["underfit_fraction"] * initial and gap_ok):
            evidence = {"final_train_loss": L[-1], "initial_loss": initial,
                        "drop_last_epochs": recent_drop}
            if len(V) == T:
                evidence["final_val_loss"] = V[-1]
            findings.append(Finding(UNDERFITTING, evidence, SUGGESTIONS[UNDERFITTING]))
    return findings


@register
class LearningCurveDiagnosis(TrainkitCallback):
    """Diagnose the learning curves at the end of training: overfitting,
    underfitting, learning rate too high or too low.

    Records the per-epoch ``loss`` and ``val_loss`` (the keys are arguments)
    and the first batch's loss (the loss before any update, the reference for
    "high"), then applies :func:`diagnose_learning_curves` in
    ``on_train_end``. The findings, each with its evidence in numbers and a
    suggestion following the course notes, are kept in ``findings`` and
    logged (WARNING when something was found, INFO otherwise); nothing is
    printed. With ``plot_path`` a PNG of the curves is written (matplotlib).

    The rules and their thresholds (all arguments):

    * learning rate too high: NaN/Inf, ``max(L) > explosion_factor * L_init``,
      an early plateau (best training loss within the first ``early_fraction``
      of the epochs and the final one more than ``rise_tolerance`` above it),
      or at least ``oscillation_fraction`` of epochs with a rising training loss;
    * overfitting: validation loss more than ``overfit_tolerance`` above its
      minimum while the training loss kept falling (ends within
      ``rise_tolerance`` of its minimum, below ``underfit_fraction * L_init``);
    * learning rate too low: a steady decrease (late/early drop rate ``>=
      steady_ratio``) that is still above ``slow_fraction * L_init``;
    * underfitting: a plateau (recent relative drop ``< plateau_tolerance``) at
      ``>= underfit_fraction * L_init`` with validation within ``underfit_gap``.

    Args:
        monitor: the training-loss key. Default ``"loss"``.
        val_monitor: the validation-loss key. Default ``"val_loss"``.
        plot_path: where to write a learning-curve PNG, or ``None``.
        min_epochs, overfit_tolerance, plateau_tolerance, rise_tolerance, underfit_fraction,
        underfit_gap, steady_ratio, slow_fraction, oscillation_fraction,
        explosion_factor, early_fraction: the thresholds above.

    Example:
        >>> diagnosis = LearningCurveDiagnosis(overfit_tolerance=0.1)
        >>> diagnosis.get_config()["overfit_tolerance"]
        0.1
    """

    def __init__(
        self,
        monitor="loss",
        val_monitor="val_loss",
        plot_path=None,
        min_epochs=4,
        overfit_tolerance=0.05,
        plateau_tolerance=0.05,
        rise_tolerance=0.01,
        underfit_fraction=0.5,
        underfit_gap=0.1,
        steady_ratio=0.5,
        slow_fraction=0.5,
        oscillation_fraction=0.3,
        explosion_factor=10.0,
        early_fraction=1.0 / 3.0,
    ):
        super().__init__()
        check_type("monitor", monitor, str)
        check_type("val_monitor", val_monitor, str)
        if plot_path is not None:
            check_type("plot_path", plot_path, (str, os.PathLike))
            if not str(plot_path):
                raise ValueError(f"Argument `plot_path` must not be empty. Received: plot_path={plot_path!r}")
        check_number("min_epochs", min_epochs, minimum=3, integer=True)
        for name, value in [("overfit_tolerance", overfit_tolerance), ("plateau_tolerance", plateau_tolerance),
                            ("rise_tolerance", rise_tolerance), ("underfit_gap", underfit_gap)]:
            check_number(name, value, minimum=0.0)
        for name, value in [("underfit_fraction", underfit_fraction), ("slow_fraction", slow_fraction),
                            ("oscillation_fraction", oscillation_fraction), ("early_fraction", early_fraction)]:
            check_number(name, value, minimum=0.0, maximum=1.0, min_inclusive=False)
        check_positive("steady_ratio", steady_ratio)
        check_number("explosion_factor", explosion_factor, minimum=1.0, min_inclusive=False)
        self.monitor = monitor
        self.val_monitor = val_monitor
        self.plot_path = None if plot_path is None else str(plot_path)
        self.thresholds = {
            "min_epochs": int(min_epochs),
            "overfit_tolerance": float(overfit_tolerance),
            "plateau_tolerance": float(plateau_tolerance),
            "rise_tolerance": float(rise_tolerance),
            "underfit_fraction": float(underfit_fraction),
            "underfit_gap": float(underfit_gap),
            "steady_ratio": float(steady_ratio),
            "slow_fraction": float(slow_fraction),
            "oscillation_fraction": float(oscillation_fraction),
            "explosion_factor": float(explosion_factor),
            "early_fraction": float(early_fraction),
        }
        self._reset_state()

    def _reset_state(self):
        self.loss = []
        self.val_loss = []
        self.initial_loss = None
        self.findings = []
        self.report = ""

    def on_train_begin(self, logs=None):
        self._reset_state()

    def on_train_batch_end(self, batch, logs=None):
        if self.initial_loss is None:
            self.initial_loss = to_float((logs or {}).get(self.monitor))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = to_float(logs.get(self.monitor))
        if value is not None:
            self.loss.append(value)
        val = to_float(logs.get(self.val_monitor))
        if val is not None:
            self.val_loss.append(val)

    def on_train_end(self, logs=None):
        val = self.val_loss if len(self.val_loss) == len(self.loss) else None
        self.findings = diagnose_learning_curves(self.loss, val, self.initial_loss, **self.thresholds)
        if len(self.loss) < self.thresholds["min_epochs"]:
            self.report = (f"Learning-curve diagnosis: only {len(self.loss)} epochs "
                           f"(< min_epochs={self.thresholds['min_epochs']}); nothing to say.")
        elif self.findings:
            self.report = "Learning-curve diagnosis:\n" + "\n".join(f"  - {f}" for f in self.findings)
        else:
            self.report = "Learning-curve diagnosis: no problem found."
        logger.log(logging.WARNING if self.findings else logging.INFO, self.report)
        if self.plot_path:
            self._plot()

    @property
    def names(self):
        """The names of the findings, e.g. ``["overfitting"]``."""
        return [f.name for f in self.findings]

    def _plot(self):
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        epochs = range(1, len(self.loss) + 1)
        ax.plot(epochs, self.loss, marker="o", label=self.monitor)
        if len(self.val_loss) == len(self.loss) and self.val_loss:
            ax.plot(epochs, self.val_loss, marker="o", label=self.val_monitor)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title("; ".join(self.names) or "no problem found")
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.plot_path, dpi=100)
        plt.close(fig)

    def get_config(self):
        return {"monitor": self.monitor, "val_monitor": self.val_monitor, "plot_path": self.plot_path,
                **self.thresholds}
