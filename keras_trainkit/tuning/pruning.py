"""Pruning rules: should a trial stop, given its best value so far and the others'?

The rules are pure functions of numbers (no KerasTuner, no Keras); the
oracles of :mod:`keras_trainkit.tuning.oracles` apply them to the results a
tuner reports after every epoch.

Rules:

* :class:`MedianPruner` (a stricter form of the median stopping rule of Google
  Vizier, Golovin et al. 2017): after ``warmup_epochs``, stop a trial whose best
  value so far is worse than the median of the other trials' best values up to
  the same epoch, once ``startup_trials`` trials have reported that epoch.
  Vizier's rule compares with the median of the other (completed) trials'
  running averages up to that epoch, which are lower than their best values on
  a rising curve, so it stops fewer trials, later.
* :class:`ASHAPruner` (asynchronous successive halving, Li et al. 2020): rungs
  at epochs ``min_epochs * reduction_factor**k``; at a rung a trial continues
  only if its value ranks in the top ``1 / reduction_factor`` of the values
  recorded at that rung so far.
"""

from __future__ import annotations

import math

import numpy as np

from keras_trainkit.utils.validation import check_number, check_positive


class Pruner:
    """Base of the pruning rules.

    ``decide(step, value, others)`` gets the trial's best value up to
    ``step`` (larger is better: the oracle negates minimized objectives) and
    ``others``, a list of the other trials' best values up to ``step`` (only
    trials that reached ``step``). It returns a reason string to prune, or
    ``None``.

    NaN values follow Optuna's pruners: a trial whose value is NaN (diverged)
    is pruned where the rule would judge it (past warm-up and startup, at a
    rung), and NaN values of the others are left out of the comparison
    (Optuna's median ignores them; its successive halving never records a NaN
    at a rung).
    """

    name = "pruner"

    def decide(self, step: int, value: float, others: list[float]) -> str | None:
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor arguments."""
        return {}


def _finite_others(others) -> list[float]:
    """The other trials' values that are numbers (NaN left out)."""
    return [float(v) for v in others if not math.isnan(v)]


def _nan_reason(value: float, step: int) -> str | None:
    """The reason to prune a trial whose value is NaN, or ``None``."""
    if math.isnan(value):
        return f"value is NaN by epoch {step}"
    return None


class MedianPruner(Pruner):
    """Stop a trial that is worse than the median of the others at the same epoch.

    The others' *best* values up to the epoch, not the running averages of
    Vizier's median stopping rule (Golovin et al. 2017), so it prunes more (see
    the module docstring); the benchmarks in docs/benchmarks.md measured this rule.

    Args:
        startup_trials: how many other trials must have reported an epoch
            before trials are pruned at that epoch.
        warmup_epochs: epochs (counted from 0) that are never pruned.

    Example:
        >>> MedianPruner(startup_trials=2).decide(3, 0.5, [0.7, 0.9]) is not None
        True
    """

    name = "median"

    def __init__(self, startup_trials: int = 5, warmup_epochs: int = 1):
        self.startup_trials = check_positive("startup_trials", startup_trials, integer=True)
        self.warmup_epochs = check_number("warmup_epochs", warmup_epochs, minimum=0, integer=True)

    def decide(self, step, value, others):
        if step < self.warmup_epochs or len(others) < self.startup_trials:
            return None
        if (reason := _nan_reason(value, step)) is not None:
            return reason
        others = _finite_others(others)
        if not others:
            return None
        median = float(np.median(others))
        if value < median:
            return (f"best value {value:.4g} by epoch {step} is below the median {median:.4g} "
                    f"of {len(others)} other trials")
        return None

    def get_config(self):
        return {"startup_trials": self.startup_trials, "warmup_epochs": self.warmup_epochs}


class ASHAPruner(Pruner):
    """Asynchronous successive halving (Li et al. 2020, "A System for Massively
    Parallel Hyperparameter Tuning").

    Rungs are the epochs ``min_epochs * reduction_factor**k - 1`` (0-based);
    at a rung a trial continues only if its best value so far is among the
    top ``max(1, floor(n / reduction_factor))`` of the ``n`` values recorded
    at that rung (its own included).

    Args:
        min_epochs: epochs of the first rung (the minimum resource). The
            default 2 skips a ranking after one epoch, which warm-up and
            one-cycle schedules make unreliable (a first rung at 1 epoch
            pruned the best trial of one of three seeds in
            ``benchmarks/tuning_efficiency.py``; see docs/benchmarks.md).
        reduction_factor: ``eta``; a rung keeps the top ``1/eta``.

    Example:
        >>> pruner = ASHAPruner(min_epochs=1, reduction_factor=3)
        >>> pruner.rungs(10)
        [0, 2, 8]
    """

    name = "asha"

    def __init__(self, min_epochs: int = 2, reduction_factor: int = 3):
        self.min_epochs = check_positive("min_epochs", min_epochs, integer=True)
        self.reduction_factor = check_number("reduction_factor", reduction_factor, minimum=2,
                                             integer=True)

    def rungs(self, max_epochs: int) -> list[int]:
        """The 0-based epochs at which trials are compared, below ``max_epochs``."""
        rungs, resource = [], self.min_epochs
        while resource <= max_epochs:
            rungs.append(resource - 1)
            resource *= self.reduction_factor
        return rungs

    def decide(self, step, value, others):
        if step + 1 < self.min_epochs:
            return None
        ratio = (step + 1) / self.min_epochs
        k = round(math.log(ratio, self.reduction_factor))
        if self.min_epochs * self.reduction_factor**k != step + 1:
            return None  # not a rung
        if (reason := _nan_reason(value, step)) is not None:
            return reason
        others = _finite_others(others)
        values = sorted([*others, value], reverse=True)
        keep = max(1, len(values) // self.reduction_factor)
        if value < values[keep - 1]:
            return (f"value {value:.4g} at rung epoch {step} is outside the top {keep} of "
                    f"{len(values)} trials")
        return None

    def get_config(self):
        return {"min_epochs": self.min_epochs, "reduction_factor": self.reduction_factor}


PRUNERS = {"median": MedianPruner, "asha": ASHAPruner}


def get_pruner(identifier) -> Pruner | None:
    """A pruner from ``"median"``, ``"asha"``, ``"none"``/``None`` or an instance."""
    if identifier is None or identifier == "none":
        return None
    if isinstance(identifier, Pruner):
        return identifier
    if isinstance(identifier, str) and identifier in PRUNERS:
        return PRUNERS[identifier]()
    raise ValueError("Argument `pruner` must be 'median', 'asha', 'none' or a Pruner. "
                     f"Received: pruner={identifier!r}")


__all__ = ["ASHAPruner", "MedianPruner", "PRUNERS", "Pruner", "get_pruner"]
