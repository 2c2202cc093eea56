"""A trial's score when its ``HyperModel.fit`` (or ``Tuner.run_trial``) returns a value.

KerasTuner scores a trial by what ``Tuner.run_trial`` returns, one result per
execution (``tuner_utils.convert_to_metrics_dict``): a float or a dict of
metrics is the score as it is, a ``keras.callbacks.History`` counts its best
epoch of the objective, and several executions are averaged. Our tuners also
send every epoch's logs to the oracle (for pruning, resume and the report), so
the objective's per-epoch values are in the trial's record, and the oracle's
``score_trial`` (the best value over the steps) would score the best epoch even
where ``fit`` returned another value (a final evaluation, a value of one's own).
So, on every path that scores a trial:

* the tuner, once a trial whose epochs reached the oracle has ended, sends
  KerasTuner's metrics of its results with :func:`returned_report` when an
  execution returned a float or a dict: one ``oracle.update_trial`` whose names
  all start with :data:`RETURNED_PREFIX`. It travels as any report does (from an
  isolated trial's process, over KerasTuner's chief/worker protocol) and stays
  out of the objective's per-epoch values, which pruning, the Optuna study's
  intermediate values and the report's curves read;
* the oracle records it at step 0 under those names (a second report of a trial,
  a resumed one's, replaces the first) and scores the trial by it:
  :class:`ReturnedScore` (every oracle of ours), or
  :func:`score_returned_values` for another tuner's oracle. ``trial.best_step``
  stays the best epoch (KerasTuner's would be 0): the epoch whose weights
  ``load_model`` loads.

A trial whose results are all Histories keeps its per-epoch score: with one
execution that is the History's best epoch, as KerasTuner's; with several, the
best epoch of the mean over the executions, the curve pruning judged (KerasTuner
averages each execution's best epoch). A pruned trial resumed after a kill ends
without running ``fit`` again (an empty History), so it keeps its best epoch.
"""

from __future__ import annotations

import functools

import keras
import keras_tuner

from keras_trainkit._compat import keras_tuner as kt_compat

RETURNED_PREFIX = "returned/"
"""The prefix of the metric names under which an oracle records what ``fit`` returned."""


def returned_report(results, objective) -> dict:
    """The report of what a trial's ``fit`` returned, or ``{}`` when it returned only
    Histories (then the epochs already reported score it).

    Args:
        results: what ``Tuner.run_trial`` returned (a list of one result per
            execution, or one result), validated as KerasTuner validates it.
        objective: the oracle's ``keras_tuner.Objective``.

    Returns:
        KerasTuner's metrics of the results (an execution that returned a
        History counts its best epoch; executions are averaged), every name
        prefixed by :data:`RETURNED_PREFIX`.
    """
    items = results if isinstance(results, list) else [results]
    if all(isinstance(item, keras.callbacks.History) for item in items):
        return {}
    metrics = kt_compat.metrics_from_results(results, objective)
    return {RETURNED_PREFIX + name: float(value) for name, value in metrics.items()}


def is_returned_report(metrics) -> bool:
    """Whether an ``update_trial`` report is a :func:`returned_report`."""
    return bool(metrics) and all(str(name).startswith(RETURNED_PREFIX) for name in metrics)


@keras_tuner.synchronized
def record_returned(oracle, trial_id, report: dict):
    """Record a :func:`returned_report` in the trial's metrics at step 0, replacing an
    earlier one, and save the trial's record. Returns the trial."""
    trial = oracle.trials[trial_id]
    for name, value in report.items():
        base = name[len(RETURNED_PREFIX):]
        direction = trial.metrics.get_direction(base) if trial.metrics.exists(base) else "min"
        trial.metrics.metrics.pop(name, None)
        trial.metrics.register(name, direction=direction)
        trial.metrics.update(name, value, step=0)
    kt_compat.save_trial_record(oracle, trial)
    return trial


def returned_metrics(trial) -> dict:
    """What the trial's ``fit`` returned (names without the prefix), as the oracle
    recorded it; ``{}`` when nothing was."""
    return {name[len(RETURNED_PREFIX):]: float(trial.metrics.get_last_value(name))
            for name in trial.metrics.metrics if name.startswith(RETURNED_PREFIX)}


def score_by_returned(objective, trial) -> None:
    """Set ``trial.score`` to the objective's returned value, if ``fit`` returned one."""
    returned = returned_metrics(trial)
    if objective.name in returned:
        trial.score = returned[objective.name]


class ReturnedScore:
    """Oracle mixin: records a :func:`returned_report` and scores a trial by it
    (KerasTuner's ``score_trial`` otherwise). Put it before the KerasTuner oracle."""

    def update_trial(self, trial_id, metrics, step=0):
        if is_returned_report(metrics):
            return record_returned(self, trial_id, metrics)
        return super().update_trial(trial_id, metrics, step=step)

    def score_trial(self, trial):
        super().score_trial(trial)
        score_by_returned(self.objective, trial)


def _update_trial(oracle, trial_id, metrics, step=0):
    if is_returned_report(metrics):
        return record_returned(oracle, trial_id, metrics)
    return type(oracle).update_trial(oracle, trial_id, metrics, step=step)


def _score_trial(oracle, trial):
    type(oracle).score_trial(oracle, trial)
    score_by_returned(oracle.objective, trial)


def score_returned_values(oracle) -> None:
    """Give a KerasTuner oracle of another class than ours :class:`ReturnedScore`'s
    ``update_trial`` and ``score_trial`` (on the instance: the oracle calls
    ``score_trial`` itself in ``end_trial``). Does nothing for a :class:`ReturnedScore`."""
    if isinstance(oracle, ReturnedScore):
        return
    oracle.update_trial = functools.partial(_update_trial, oracle)
    oracle.score_trial = functools.partial(_score_trial, oracle)


__all__ = [
    "RETURNED_PREFIX",
    "ReturnedScore",
    "is_returned_report",
    "record_returned",
    "returned_metrics",
    "returned_report",
    "score_by_returned",
    "score_returned_values",
]
