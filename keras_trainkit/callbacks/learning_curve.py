"""Read the learning curves at the end of training and say what went wrong, with numbers."""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from keras_trainkit.callbacks._monitor import TrainkitCallback
from keras_trainkit.utils.values import to_float
from keras_trainkit.callbacks._registry import register
from keras_trainkit.utils.validation import check_condition, check_number, check_positive, check_type

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


def _check_val_epochs(val_epochs, n_values, n_epochs):
    """``val_epochs`` as a list of ``int``, after checking that it holds one 0-based index into
    ``loss`` per validation value (``n_values``), strictly increasing, each in ``[0, n_epochs)``."""
    check_type("val_epochs", val_epochs, Iterable)
    epochs = list(val_epochs)
    check_condition("val_epochs", val_epochs,
                    all(isinstance(e, numbers.Integral) and not isinstance(e, bool) for e in epochs),
                    "must hold integers: the 0-based indices into `loss` of the epochs where "
                    "`val_loss` was measured")
    check_condition("val_epochs", val_epochs, len(epochs) == n_values,
                    f"must have one epoch per value of `val_loss` ({n_values} values), not {len(epochs)}")
    check_condition("val_epochs", val_epochs, all(a < b for a, b in zip(epochs, epochs[1:])),
                    "must be strictly increasing")
    check_condition("val_epochs", val_epochs, all(0 <= e < n_epochs for e in epochs),
                    f"must hold indices into `loss` ({n_epochs} epochs): 0 <= epoch < {n_epochs}")
    return [int(e) for e in epochs]


def _first_non_finite_epoch(L, V, E):
    """The 1-based epoch of the first NaN/Inf of ``L``, else of ``V``, or ``None``.

    ``V[j]`` belongs to epoch ``E[j] + 1``; without ``E`` (a validation curve
    whose length is not ``T``, ignored by the other rules) to epoch ``j % T + 1``.
    """
    T = len(L)
    val_epochs = E if E is not None else [j % T for j in range(len(V))]
    for epoch, value in zip(list(range(T)) + val_epochs, L + V):
        if not math.isfinite(value):
            return epoch + 1
    return None


def _learning_rate_too_high(L, initial, still_at_min, t):
    """The finite-loss "learning rate too high" :class:`Finding` of :func:`diagnose_learning_curves`, or ``None``."""
    T = len(L)
    best_train = min(L)
    best_train_epoch = L.index(best_train)
    increases = sum(1 for a, b in zip(L, L[1:]) if b > a)
    evidence = {}
    if max(L) > t["explosion_factor"] * initial:
        evidence.update(max_train_loss=max(L), initial_loss=initial)
    if best_train_epoch < t["early_fraction"] * T and not still_at_min:
        evidence.update(best_train_epoch=best_train_epoch + 1, best_train_loss=best_train, final_train_loss=L[-1])
    if increases / (T - 1) >= t["oscillation_fraction"]:
        evidence.update(train_loss_increases=f"{increases}/{T - 1}")
    return Finding(LR_TOO_HIGH, evidence, SUGGESTIONS[LR_TOO_HIGH]) if evidence else None


def _overfitting(L, V, E, initial, still_at_min, t):
    """The overfitting :class:`Finding` of :func:`diagnose_learning_curves`, or ``None``."""
    if len(V) < 2:
        return None
    LV = [L[e] for e in E]
    b = V.index(min(V))
    fits_training_data = L[-1] < t["underfit_fraction"] * initial
    if not (b < len(V) - 1 and V[-1] > V[b] * (1 + t["overfit_tolerance"]) and LV[-1] < LV[b]
            and still_at_min and fits_training_data):
        return None
    return Finding(OVERFITTING, {
        "best_val_epoch": E[b] + 1, "best_val_loss": V[b], "final_val_loss": V[-1],
        "val_rise": V[-1] / V[b] - 1, "train_loss_at_best": LV[b], "final_train_loss": L[-1],
    }, SUGGESTIONS[OVERFITTING])


def _learning_rate_too_low_or_underfitting(L, V, E, initial, t):
    """The "learning rate too low" or else the underfitting :class:`Finding` of
    :func:`diagnose_learning_curves`, or ``None``."""
    T = len(L)
    m = max(1, T // 3)
    first_drop = _mean_drop(L[: m + 1])
    last_drop = _mean_drop(L[-(m + 1):])
    # r is a steady decrease's measure: with no drop at first there is none to measure
    ratio = last_drop / first_drop if first_drop > 0 else 0.0
    falling = sum(1 for a, b in zip(L, L[1:]) if b < a) / (T - 1)  # strictly: a flat epoch is no fall
    if falling >= 0.9 and ratio >= t["steady_ratio"] and L[-1] > t["slow_fraction"] * initial:
        return Finding(LR_TOO_LOW, {
            "mean_drop_first_epochs": first_drop, "mean_drop_last_epochs": last_drop,
            "final_over_initial": L[-1] / initial,
        }, SUGGESTIONS[LR_TOO_LOW])
    recent_drop = (L[-(m + 1)] - L[-1]) / abs(L[-(m + 1)]) if L[-(m + 1)] else 0.0
    gap_ok = not V or V[-1] <= L[E[-1]] * (1 + t["underfit_gap"])
    if not (recent_drop < t["plateau_tolerance"] and ratio < t["steady_ratio"]
            and L[-1] >= t["underfit_fraction"] * initial and gap_ok):
        return None
    evidence = {"final_train_loss": L[-1], "initial_loss": initial, "drop_last_epochs": recent_drop}
    if V:
        evidence["final_val_loss"] = V[-1]
    return Finding(UNDERFITTING, evidence, SUGGESTIONS[UNDERFITTING])


def diagnose_learning_curves(loss, val_loss=None, initial_loss=None, *, val_epochs=None, **thresholds):
    """Diagnose per-epoch training (and validation) loss curves.

    With ``T`` epochs (nothing is said below ``min_epochs``), ``L`` the training
    and ``V`` the validation curve, ``E`` the 0-based epochs at which ``V`` was
    measured (``val_epochs``; every epoch, ``E = [0, ..., T - 1]``, by default),
    ``LV = [L[e] for e in E]`` the training loss at those epochs, ``L_init`` the
    loss before training (``initial_loss``, e.g. the first batch's loss; default
    ``L[0]``), a third ``m = max(1, T // 3)`` epochs, and ``r = mean drop of L
    over the last m epochs / mean drop over the first m epochs`` (0 when ``L``
    did not drop over the first ``m``: there is no steady decrease to measure):

    * **learning rate too high** when a loss is NaN/Inf (evidence: the 1-based
      epoch of the first one in ``L``, else in ``V``, where ``V[j]`` is epoch
      ``E[j] + 1``); or ``max(L) > explosion_factor * L_init`` (an early
      blow-up); or the training loss stops improving early: ``argmin(L) <
      early_fraction * T`` and ``L[-1] > min(L) * (1 + rise_tolerance)``; or it
      oscillates: at least ``oscillation_fraction`` of the epoch-to-epoch
      changes of ``L`` are increases.
    * **overfitting** when the validation loss rose while the training loss
      fell: ``len(V) >= 2``, ``b = argmin(V) < len(V) - 1`` (the first
      minimum), ``V[-1] > V[b] * (1 + overfit_tolerance)``, ``LV[-1] < LV[b]``,
      ``L[-1] <= min(L) * (1 + rise_tolerance)`` and the model fits its
      training data, ``L[-1] < underfit_fraction * L_init``. The evidence's
      ``best_val_epoch`` is ``E[b] + 1`` and ``train_loss_at_best`` is ``LV[b]``.
    * **learning rate too low** for a slow, steady decrease: ``L`` falls
      (strictly) at >= 90% of the epochs, ``r >= steady_ratio`` (no slowing down) and
      ``L[-1] > slow_fraction * L_init``.
    * **underfitting** when both losses plateau high: the relative drop of
      ``L`` over the last ``m`` epochs is below ``plateau_tolerance``, ``r <
      steady_ratio``, ``L[-1] >= underfit_fraction * L_init`` and, when there
      is a validation curve, ``V[-1] <= LV[-1] * (1 + underfit_gap)``.

    With ``E = [0, ..., T - 1]`` these are the every-epoch rules (``LV = L``).
    Keras's ``model.fit(..., validation_freq=k)`` logs ``val_loss`` only after
    the epochs ``e`` (0-based) with ``(e + 1) % k == 0``: there
    ``val_epochs = [k - 1, 2k - 1, ...]``.

    Args:
        loss: per-epoch training losses.
        val_loss: validation losses, or ``None``. Without ``val_epochs`` one per
            epoch; a curve of another length is left out of the rules.
        initial_loss: the loss before training; ``None`` uses ``loss[0]``.
        val_epochs: the 0-based indices into ``loss`` of the epochs at which
            the values of ``val_loss`` were measured (strictly increasing, one
            per value), or ``None`` for every epoch.
        **thresholds: overrides of :data:`DEFAULT_THRESHOLDS` (another name is a ``TypeError``).

    Returns:
        A list of :class:`Finding` (empty when nothing looks wrong).

    Raises:
        ValueError: when ``val_epochs`` holds a non-integer, is not strictly
            increasing, has not one entry per value of ``val_loss`` or holds an
            index outside ``[0, len(loss))``.
        TypeError: when ``val_epochs`` is not iterable, or a threshold's name is unknown.

    Example:
        >>> [f.name for f in diagnose_learning_curves([2.3, 1.5, 1.0, 0.6, 0.3],
        ...                                          [2.2, 1.8, 1.9, 2.2, 2.6])]
        ['overfitting']
        >>> [f.evidence["best_val_epoch"] for f in diagnose_learning_curves(
        ...     [2.3, 1.5, 1.0, 0.6, 0.3, 0.2], [1.8, 2.2, 2.6], val_epochs=[1, 3, 5])]
        [2]
    """
    unknown = sorted(set(thresholds) - set(DEFAULT_THRESHOLDS))
    if unknown:
        received = ", ".join(f"{name}={thresholds[name]!r}" for name in unknown)
        raise TypeError(f"Unknown threshold argument(s) {unknown}; the thresholds are "
                        f"{sorted(DEFAULT_THRESHOLDS)}. Received: {received}")
    t = {**DEFAULT_THRESHOLDS, **thresholds}
    L = [float(v) for v in loss]
    V = [float(v) for v in val_loss] if val_loss is not None else []  # an array has no truth value
    T = len(L)
    if val_epochs is not None:
        E = _check_val_epochs(val_epochs, len(V), T)
    else:
        E = list(range(T)) if len(V) == T else None  # a curve of another length is left out
    if T < t["min_epochs"]:
        return []
    non_finite_epoch = _first_non_finite_epoch(L, V, E)
    if non_finite_epoch is not None:
        return [Finding(LR_TOO_HIGH, {"first_non_finite_epoch": non_finite_epoch}, SUGGESTIONS[LR_TOO_HIGH])]
    initial = float(initial_loss) if initial_loss is not None and math.isfinite(initial_loss) else L[0]
    still_at_min = L[-1] <= min(L) * (1 + t["rise_tolerance"])
    if E is None or not V:  # no validation curve for the rules
        V, E = [], []
    found = [_learning_rate_too_high(L, initial, still_at_min, t), _overfitting(L, V, E, initial, still_at_min, t),
             _learning_rate_too_low_or_underfitting(L, V, E, initial, t)]
    return [finding for finding in found if finding is not None]


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

    Validation every ``k`` epochs (``model.fit(..., validation_freq=k)``) is
    diagnosed at the epochs where it was measured: each ``val_loss`` value is
    recorded with the index of its epoch in ``loss`` (``val_epochs``). A value
    logged at an epoch without a training loss has no such index: it is left
    out of the diagnosis, and ``report`` says how many were.

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

    Attributes:
        loss: the training losses, one per epoch that logged one.
        val_loss: the validation losses, one per epoch that logged one.
        val_epochs: for each value of ``val_loss``, the 0-based index in
            ``loss`` of its epoch, or ``None`` where that epoch logged no
            training loss.
        initial_loss: the first batch's training loss.
        findings: the :class:`Finding` list of the last ``fit``.
        report: the text logged at the end of the last ``fit``.

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
        self.val_epochs = []
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
            self.val_epochs.append(len(self.loss) - 1 if value is not None else None)

    def _aligned_validation(self):
        """``(epochs, values)``: the validation losses that have an epoch in ``loss``, and those epochs."""
        pairs = [(e, v) for e, v in zip(self.val_epochs, self.val_loss) if e is not None]
        return [e for e, _ in pairs], [v for _, v in pairs]

    def on_train_end(self, logs=None):
        val_epochs, val = self._aligned_validation()
        self.findings = diagnose_learning_curves(self.loss, val, self.initial_loss, val_epochs=val_epochs,
                                                 **self.thresholds)
        if len(self.loss) < self.thresholds["min_epochs"]:
            self.report = (f"Learning-curve diagnosis: only {len(self.loss)} epochs "
                           f"(< min_epochs={self.thresholds['min_epochs']}); nothing to say.")
        elif self.findings:
            self.report = "Learning-curve diagnosis:\n" + "\n".join(f"  - {f}" for f in self.findings)
        else:
            self.report = "Learning-curve diagnosis: no problem found."
        left_out = len(self.val_loss) - len(val)
        if left_out:
            self.report += (f"\n  Note: {left_out} of the {len(self.val_loss)} `{self.val_monitor}` values were "
                            f"logged at epochs without `{self.monitor}` and are left out of the diagnosis.")
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
        val_epochs, val = self._aligned_validation()
        if val:
            ax.plot([e + 1 for e in val_epochs], val, marker="o", label=self.val_monitor)
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
