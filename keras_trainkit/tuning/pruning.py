"""Pruning of unpromising KerasTuner trials from their per-epoch results.

A tuner built on ``keras_trainkit.tuning.TrainkitTunerMixin`` reports the objective after every
epoch to the oracle (``oracle.update_trial(trial_id, logs, step=epoch)``). An
oracle built on :class:`PruningOracleMixin` asks its pruner whether the trial
should stop; if so it marks the returned trial ``STOPPED`` (the signal
KerasTuner reserves for early stopping) and the tuner ends the trial's
``model.fit`` after that epoch. This works in-process and across KerasTuner's
chief/worker protocol, since the decision travels with ``update_trial``.

A pruned trial is not a failure: it ends ``COMPLETED`` and keeps the best
score it reached, so Bayesian optimization learns from it; the oracle records
it in ``oracle.pruned_trials`` (``{trial_id: {"epoch", "rule", "reason"}}``),
saved with the oracle's state, and puts the reason in ``trial.message``.

Rules:

* :class:`MedianPruner` (the median stopping rule of Google Vizier, Golovin et
  al. 2017): after ``warmup_epochs``, stop a trial whose best value so far is
  worse than the median of the other trials' best values up to the same epoch,
  once ``startup_trials`` trials have reported that epoch.
* :class:`ASHAPruner` (asynchronous successive halving, Li et al. 2020): rungs
  at epochs ``min_epochs * reduction_factor**k``; at a rung a trial continues
  only if its value ranks in the top ``1 / reduction_factor`` of the values
  recorded at that rung so far.
"""

from __future__ import annotations

import json
import math
import os
import time

import keras_tuner
import numpy as np
from keras_tuner.src.engine import trial as trial_module

from keras_trainkit.utils.files import write_atomically
from keras_trainkit.utils.validation import check_number, check_positive, check_type

STOPPED = trial_module.TrialStatus.STOPPED
RUNNING = trial_module.TrialStatus.RUNNING


class Pruner:
    """Base of the pruning rules.

    ``decide(step, value, others)`` gets the trial's best value up to
    ``step`` (larger is better: the oracle negates minimized objectives) and
    ``others``, a list of the other trials' best values up to ``step`` (only
    trials that reached ``step``). It returns a reason string to prune, or
    ``None``.
    """

    name = "pruner"

    def decide(self, step: int, value: float, others: list[float]) -> str | None:
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor arguments."""
        return {}


class MedianPruner(Pruner):
    """Stop a trial that is worse than the median of the others at the same epoch.

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


SEED_STRIDE = 1_000_003
"""Draws between the random streams of consecutive seeds (see :func:`seed_oracle`)."""


def seed_oracle(oracle, seed) -> None:
    """Give a KerasTuner ``oracle`` a random stream of its own for ``seed``.

    Called right after the oracle is built (a resumed search then restores its
    saved position in the stream). Two fixes to KerasTuner's seeding:

    * ``seed=0`` is a seed. KerasTuner's ``Oracle`` stores ``seed or
      random.randint(1, 10000)``, so 0 silently meant *unseeded*.
    * Nearby seeds give independent searches. KerasTuner seeds its ``n``-th
      draw with ``seed + n``, so the stream of seed 2 is that of seed 1 shifted
      by one draw, and two such searches fall into step (trial for trial) after
      a conditional hyperparameter. The stream now starts at
      ``seed * SEED_STRIDE``, so searches of fewer than a million draws with
      different seeds never share one.
    """
    if seed == 0 and not isinstance(seed, bool):
        oracle.seed = 0
        if hasattr(oracle, "_random_state"):  # BayesianOptimizationOracle
            oracle._random_state = np.random.RandomState(0)
            oracle.gpr = oracle._make_gpr()
    oracle._seed_state = oracle.seed * SEED_STRIDE


class PruningOracleMixin:
    """Adds pruning to a KerasTuner ``Oracle`` (put it first among the bases).

    Args:
        pruner: a :class:`Pruner`, ``"median"``, ``"asha"`` or ``None``.
        start_from_defaults: the first trial takes every hyperparameter's default
            instead of the oracle's suggestion, so a search can start from a known
            recipe (set the defaults with the spaces' ``defaults``).
    """

    def __init__(self, *args, pruner=None, start_from_defaults: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        seed_oracle(self, kwargs.get("seed"))
        self.pruner = get_pruner(pruner)
        self.start_from_defaults = check_type("start_from_defaults", start_from_defaults, bool)
        self.pruned_trials: dict[str, dict] = {}
        # Wall-clock time (``time.time()``) after which no new trial starts;
        # set by the tuner's ``time_budget``.
        self.deadline: float | None = None

    def populate_space(self, trial_id):
        if self.deadline is not None and time.time() > self.deadline:
            return {"status": STOPPED, "values": None}
        if self.start_from_defaults and not self.trials:
            return {"status": RUNNING, "values": self._default_values()}
        return super().populate_space(trial_id)

    def _default_values(self) -> dict:
        """Every active hyperparameter at its default."""
        values = keras_tuner.HyperParameters()
        for hp in self.hyperparameters.space:
            values.merge([hp])
            if values.is_active(hp):
                values.values[hp.name] = hp.default
        return values.values

    def _best_by_step(self, trial, step: int) -> float | None:
        """The trial's best objective value up to ``step``, larger-is-better."""
        name = self.objective.name
        if not trial.metrics.exists(name):
            return None
        sign = 1.0 if self.objective.direction == "max" else -1.0
        values = [sign * obs.value[0] for obs in trial.metrics.get_history(name)
                  if obs.step <= step and np.isfinite(obs.value[0])]
        return max(values) if values else None

    def _reached(self, trial, step: int) -> bool:
        name = self.objective.name
        return trial.metrics.exists(name) and any(
            obs.step >= step for obs in trial.metrics.get_history(name))

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        trial = super().update_trial(trial_id, metrics, step=step)
        if self.pruner is None or self.objective.name not in metrics:
            return trial
        value = self._best_by_step(trial, step)
        if value is None:
            return trial
        others = [self._best_by_step(t, step) for t in self.trials.values()
                  if t.trial_id != trial_id and self._reached(t, step)]
        reason = self.pruner.decide(int(step), value, [v for v in others if v is not None])
        if reason:
            self.pruned_trials[trial_id] = {"epoch": int(step), "rule": self.pruner.name,
                                            "reason": reason}
            trial.message = f"pruned at epoch {step} by the {self.pruner.name} rule: {reason}"
            trial.status = STOPPED
        return trial

    @keras_tuner.synchronized
    def end_trial(self, trial):
        if trial.trial_id in self.pruned_trials:
            info = self.pruned_trials[trial.trial_id]
            trial.message = (f"pruned at epoch {info['epoch']} by the {info['rule']} rule: "
                             f"{info['reason']}")
        super().end_trial(trial)

    # KerasTuner writes ``trial.json`` and ``oracle.json`` in place; a kill during
    # the write would leave a truncated file that stops the search from resuming.
    def _save_trial(self, trial):
        write_atomically(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"),
                         json.dumps(trial.get_state()).encode())

    def save(self):
        write_atomically(self._get_oracle_fname(), json.dumps(self.get_state()).encode())

    def reload(self):
        super().reload()
        # KerasTuner reloads the trials in file-listing order, which is arbitrary,
        # and ranks equal scores in that order: a resumed search could name
        # another best trial than the search that ran. Keep creation order.
        self.trials = dict(sorted(self.trials.items(), key=lambda item: (len(item[0]), item[0])))

    def get_state(self):
        state = super().get_state()
        state["pruned_trials"] = self.pruned_trials
        return state

    def set_state(self, state):
        super().set_state(state)
        self.pruned_trials = state.get("pruned_trials", {})


class PruningRandomSearchOracle(PruningOracleMixin, keras_tuner.oracles.RandomSearchOracle):
    """KerasTuner's ``RandomSearchOracle`` with a ``pruner`` argument."""


class PruningBayesianOptimizationOracle(PruningOracleMixin,
                                        keras_tuner.oracles.BayesianOptimizationOracle):
    """KerasTuner's ``BayesianOptimizationOracle`` with a ``pruner`` argument."""


__all__ = [
    "ASHAPruner",
    "MedianPruner",
    "PRUNERS",
    "Pruner",
    "PruningBayesianOptimizationOracle",
    "PruningOracleMixin",
    "PruningRandomSearchOracle",
    "SEED_STRIDE",
    "get_pruner",
    "seed_oracle",
]
