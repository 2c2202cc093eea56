"""KerasTuner oracles with pruning, a first trial at the defaults, a time limit and
crash-safe records.

A tuner built on :class:`keras_trainkit.tuning.TrainkitTunerMixin` reports the
objective after every epoch (``oracle.update_trial(trial_id, logs, step=epoch)``).
An oracle built on :class:`PruningOracleMixin` asks its pruner
(:mod:`keras_trainkit.tuning.pruning`) whether the trial should stop; if so it
marks the returned trial ``STOPPED`` (the signal KerasTuner reserves for early
stopping) and the tuner ends the trial's ``model.fit`` after that epoch. This
works in-process and across KerasTuner's chief/worker protocol, since the
decision travels with ``update_trial``.

With ``executions_per_trial > 1``, trials are pruned during their first
execution only (a pruned trial runs no further execution); a trial that
passed its first runs every execution, so each of its epochs is the mean of
them all.

A pruned trial is not a failure: it ends ``COMPLETED`` and keeps the best
score it reached (or, when its ``fit`` returned a value, that value, as
KerasTuner scores it: :mod:`~keras_trainkit.tuning.returned_score`), so
Bayesian optimization learns from it; the oracle records
it in ``oracle.pruned_trials`` (``{trial_id: {"epoch", "rule", "reason"}}``),
saved with the oracle's state as soon as the rule decides (a search killed
before the trial ended finds the decision when it resumes), and puts the
reason in ``trial.message``.

The ready-made oracles: :class:`PruningRandomSearchOracle`,
:class:`PruningBayesianOptimizationOracle`, :class:`PruningGridSearchOracle`
and :class:`HyperbandOracle` (Hyperband prunes by its own brackets, so it
takes no pruner; it gets the rest).
"""

from __future__ import annotations

import time

import keras_tuner
import numpy as np
from keras_tuner.engine.trial import TrialStatus

from keras_trainkit._compat import keras_tuner as kt_compat
from keras_trainkit.tuning.pruning import get_pruner
from keras_trainkit.tuning.returned_score import ReturnedScore
from keras_trainkit.utils.validation import (
    check_condition,
    check_non_negative,
    check_number,
    check_positive,
    check_seed,
    check_type,
)

STOPPED = TrialStatus.STOPPED
RUNNING = TrialStatus.RUNNING

SEED_STRIDE = 1_000_003
"""Draws between the random streams of consecutive seeds (see :func:`seed_oracle`)."""

# Keys KerasTuner's Hyperband adds to a trial's values (its bracket bookkeeping).
_TUNER_KEYS_PREFIX = "tuner/"


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

    Args:
        oracle: a KerasTuner oracle, just built.
        seed: an integer in ``[0, 2**32 - 1]``, which replaces the oracle's
            own, or ``None`` to keep it (KerasTuner drew one if it was built
            without).

    Raises:
        TypeError, ValueError: ``seed`` is not such an integer or ``None``.
    """
    seed = check_seed("seed", seed)
    if seed is not None and seed != oracle.seed:
        oracle.seed = seed
        kt_compat.reseed_bayesian_oracle(oracle, seed)
    kt_compat.set_random_stream_position(oracle, oracle.seed * SEED_STRIDE)


def _check_oracle_arguments(kwargs: dict) -> None:
    """Check KerasTuner's ``Oracle`` arguments in ``kwargs`` (the seed in place, as an
    ``int``), which KerasTuner takes as they come and fails on at a later trial."""
    if "seed" in kwargs:
        kwargs["seed"] = check_seed("seed", kwargs["seed"])
    objectives = kwargs.get("objective")
    for objective in objectives if isinstance(objectives, (list, tuple)) else [objectives]:
        # KerasTuner takes Objective("val_loss", "minimize") and fails every trial at its
        # first report (MetricHistory refuses the direction), after training it.
        direction = getattr(objective, "direction", "min")
        if isinstance(objective, keras_tuner.Objective) and direction not in ("min", "max"):
            raise ValueError(f"Argument `objective` must have the direction 'min' or 'max'. "
                             f"Received: objective={objective}")
    if isinstance(kwargs.get("objective"), (list, tuple)):
        # KerasTuner ran a search with no objective (every score 0), and counted a metric
        # named twice twice (with opposite directions, the two cancelled out).
        names = [getattr(o, "name", o) for o in kwargs["objective"]]
        check_condition("objective", names, len(names) > 0, "must name at least one metric")
        repeated = sorted({str(name) for name in names if names.count(name) > 1})
        check_condition("objective", names, not repeated,
                        f"must name each metric once ({', '.join(repeated)} more than once)")
    if kwargs.get("max_trials") is not None:  # GridSearch: None runs every combination
        check_positive("max_trials", kwargs["max_trials"], integer=True)
    if "max_consecutive_failed_trials" in kwargs:  # 0 stops after the first trial
        check_positive("max_consecutive_failed_trials",
                       kwargs["max_consecutive_failed_trials"], integer=True)
    if "max_retries_per_trial" in kwargs:
        check_non_negative("max_retries_per_trial", kwargs["max_retries_per_trial"],
                           integer=True)


class PruningOracleMixin(ReturnedScore, kt_compat.AtomicTrialRecords):
    """Adds pruning, a first trial at the defaults, a deadline and crash-safe
    records to a KerasTuner ``Oracle`` (put it first among the bases).

    Args:
        pruner: a :class:`~keras_trainkit.tuning.Pruner`, ``"median"``,
            ``"asha"`` or ``None``.
        start_from_defaults: the first trial takes every hyperparameter's default
            instead of the oracle's suggestion, so a search can start from a known
            recipe (set the defaults with the spaces' ``defaults``). Hyperband's
            own bookkeeping values (``tuner/epochs``, ...) are kept.

    ``trial.json`` and ``oracle.json`` are written whole or not at all (a kill
    or a full disk during a write leaves the previous file), and a reloaded
    search ranks equal scores in trial order, as the search that ran did. A
    trial whose ``fit`` returned a float or a dict is scored by that value, as
    KerasTuner scores it, not by its best epoch
    (:class:`~keras_trainkit.tuning.returned_score.ReturnedScore`).
    """

    def __init__(self, *args, pruner=None, start_from_defaults: bool = False, **kwargs):
        _check_oracle_arguments(kwargs)
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
            return self._first_trial_at_defaults(trial_id)
        return super().populate_space(trial_id)

    def _first_trial_at_defaults(self, trial_id):
        return {"status": RUNNING, "values": self._default_values()}

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
        values = [sign * float(np.mean(obs.value)) for obs in trial.metrics.get_history(name)
                  if obs.step <= step and np.all(np.isfinite(obs.value))]
        return max(values) if values else None

    def _reached(self, trial, step: int) -> bool:
        name = self.objective.name
        return trial.metrics.exists(name) and any(
            obs.step >= step for obs in trial.metrics.get_history(name))

    def _later_execution(self, trial, step: int) -> bool:
        """Whether the value just recorded at ``step`` is not the first there: a later
        execution of a trial (``executions_per_trial > 1``) that its first passed."""
        return any(obs.step == step and len(np.atleast_1d(obs.value)) > 1
                   for obs in trial.metrics.get_history(self.objective.name))

    def _prune(self, trial, step: int, rule: str, reason: str) -> None:
        """Stop ``trial`` at ``step`` and record why, in ``oracle.json`` at once: a search
        killed before the trial ends resumes it as pruned (its epoch checkpoint records
        the decision too) and ends it with this record."""
        self.pruned_trials[trial.trial_id] = {"epoch": int(step), "rule": rule, "reason": reason}
        trial.message = f"pruned at epoch {step} by the {rule} rule: {reason}"
        trial.status = STOPPED
        self.save()

    def _forget_outlived_pruning(self, trial_id, step: int) -> None:
        """Forget the pruning of a trial that reports a later epoch: the search was
        killed after the decision but before the epoch's checkpoint recorded it, and the
        resumed trial went on (it is judged again at this epoch)."""
        info = self.pruned_trials.get(trial_id)
        if info is not None and int(step) > info["epoch"]:
            del self.pruned_trials[trial_id]

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        trial = super().update_trial(trial_id, metrics, step=step)
        self._forget_outlived_pruning(trial_id, step)
        if self.pruner is None or self.objective.name not in metrics:
            return trial
        if self._later_execution(trial, step):
            # Its first execution passed every step: a "best so far" that ignores the
            # later epochs recorded already would prune it, and its epochs after the
            # stop would keep one execution's values, not the mean (a pruned trial
            # could rank first on a value no other execution confirmed).
            return trial
        value = self._best_by_step(trial, step)
        if value is None:
            return trial
        others = [self._best_by_step(t, step) for t in self.trials.values()
                  if t.trial_id != trial_id and self._reached(t, step)]
        reason = self.pruner.decide(int(step), value, [v for v in others if v is not None])
        if reason:
            self._prune(trial, step, self.pruner.name, reason)
        return trial

    @keras_tuner.synchronized
    def end_trial(self, trial):
        if trial.trial_id in self.pruned_trials:
            info = self.pruned_trials[trial.trial_id]
            trial.message = (f"pruned at epoch {info['epoch']} by the {info['rule']} rule: "
                             f"{info['reason']}")
        super().end_trial(trial)

    def save(self):
        kt_compat.save_oracle_state(self)

    def reload(self):
        kt_compat.reload_oracle(self)  # KerasTuner's Oracle.reload, without its glob
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
    """KerasTuner's ``RandomSearchOracle`` with ``pruner`` and ``start_from_defaults``."""


class PruningBayesianOptimizationOracle(PruningOracleMixin,
                                        keras_tuner.oracles.BayesianOptimizationOracle):
    """KerasTuner's ``BayesianOptimizationOracle`` with ``pruner`` and
    ``start_from_defaults``. Pruned trials count as observations with the best
    score they reached."""


class PruningGridSearchOracle(PruningOracleMixin, keras_tuner.oracles.GridSearchOracle):
    """KerasTuner's ``GridSearchOracle`` with ``pruner`` (its first trial is
    already every hyperparameter's default)."""


class HyperbandOracle(PruningOracleMixin, keras_tuner.oracles.HyperbandOracle):
    """KerasTuner's ``HyperbandOracle`` with ``start_from_defaults``, our seeding,
    a deadline, crash-safe records and an optional cap ``max_trials`` on the
    number of trials. It takes no pruner: Hyperband stops trials by its own
    brackets."""

    def __init__(self, *args, pruner=None, max_trials: int | None = None, **kwargs):
        if pruner not in (None, "none"):
            raise ValueError("Hyperband stops trials by its own brackets and takes no pruner; "
                             "use pruner=None, or RandomSearch/BayesianOptimization for a "
                             f"pruning rule. Received: pruner={pruner!r}")
        if "max_epochs" in kwargs:  # KerasTuner fails at the first trial (an IndexError) below 1
            check_number("max_epochs", kwargs["max_epochs"], minimum=1)
        super().__init__(*args, **kwargs)
        if max_trials is not None:
            check_positive("max_trials", max_trials, integer=True)
        self.max_trials = max_trials  # KerasTuner's oracles stop creating trials at this count

    def _first_trial_at_defaults(self, trial_id):
        # Hyperband's first trial also opens its first bracket: let it do that,
        # then replace the sampled values by the defaults.
        response = keras_tuner.oracles.HyperbandOracle.populate_space(self, trial_id)
        if response.get("status") != RUNNING:
            return response
        kept = {k: v for k, v in response["values"].items() if k.startswith(_TUNER_KEYS_PREFIX)}
        return dict(response, values={**self._default_values(), **kept})


__all__ = [
    "HyperbandOracle",
    "PruningBayesianOptimizationOracle",
    "PruningGridSearchOracle",
    "PruningOracleMixin",
    "PruningRandomSearchOracle",
    "RUNNING",
    "SEED_STRIDE",
    "STOPPED",
    "seed_oracle",
]
