"""What each execution of a trial runs: where it resumes, which callbacks, in which order.

A tuner with :class:`keras_trainkit.tuning.TrainkitTunerMixin` keeps one
:class:`TrialRun` per running trial. It decides once, when the trial starts,
whether the trial's checkpoint can be resumed: only a checkpoint of this trial
(same id, same hyperparameters) that agrees with what the oracle recorded and
whose weights are readable. Anything else is reported, set aside into
``trial_<id>/damaged_<time>/`` and the trial starts clean. A checkpoint that
records a pruning decision (the search was killed after the pruned epoch's
checkpoint, before the trial ended) ends the trial as pruned at once: it
trains no further epoch, as in the search that was not killed.

For every execution :meth:`TrialRun.plan_execution` returns the ``fit``
arguments: ``initial_epoch`` when resuming, and the callbacks, in this order
after the user's own and KerasTuner's: :class:`NonFiniteLoss`,
:class:`EpochReporter` (each epoch to ``oracle.update_trial``),
:class:`BestEpochWeights` (the best epoch's weights, written atomically) and
:class:`~keras_trainkit.tuning.EpochCheckpoint` last, so a checkpoint never
names an epoch the oracle has not recorded.

The same plan runs in the search's process and in an isolated trial's process
(:mod:`keras_trainkit.tuning.isolation`), where the reporter's oracle is a
proxy that asks the search's process.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field

import keras
import numpy as np
from keras_tuner.engine.trial import TrialStatus

from keras_trainkit._compat import keras_tuner as kt_compat
from keras_trainkit.tuning.epoch_checkpoint import (
    DamagedCheckpoint,
    EpochCheckpoint,
    check_restorable,
    checkpoint_files,
    read_resume_state,
    save_weights_atomically,
    set_aside,
    settle_pending_checkpoint,
)
from keras_trainkit.utils.values import scalar_logs


class NonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first batch whose loss is NaN or Inf, remembering where."""

    def __init__(self):
        super().__init__()
        self.where = None
        self.epoch = 0

    def on_train_begin(self, logs=None):
        self.where = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = (self.epoch, batch, float(loss))
            self.model.stop_training = True


class EpochReporter(keras.callbacks.Callback):
    """Send every epoch's logs to ``oracle.update_trial(trial_id, logs, step=epoch)``
    and stop training when the oracle answers ``STOPPED`` (a pruning decision)
    or the deadline has passed.

    Works with any KerasTuner oracle, in-process, over KerasTuner's chief/worker
    protocol, or through an isolated trial's proxy; an oracle may answer with
    the trial or with its status. In a trial, the trial's
    :class:`~keras_trainkit.tuning.epoch_checkpoint.EpochCheckpoint` runs its
    epoch end, after staging the epoch's checkpoint.

    Args:
        oracle: the oracle (anything with ``update_trial``).
        trial_id: the trial's id.
        objective: the oracle's ``keras_tuner.Objective``; an epoch is reported
            only when its logs hold the objective's metrics.
        deadline: ``time.time()`` after which training stops at the epoch's end.
        skip_steps: epochs the oracle already recorded for this execution (a
            resumed trial redoing them reports them once only).

    Attributes:
        reported: whether an epoch was reported. ``stopped``: the reason
            training was stopped (``"pruned"``, ``"time budget"``), or ``None``.
    """

    def __init__(self, oracle, trial_id, objective, deadline: float | None = None,
                 skip_steps=()):
        super().__init__()
        self.oracle = oracle
        self.trial_id = trial_id
        self.objective = objective
        self.deadline = deadline
        self.skip_steps = set(skip_steps)
        self.reported = False
        self.stopped = None

    def _stop(self, reason: str) -> None:
        self.stopped = self.stopped or reason
        self.model.stop_training = True

    def will_report(self, epoch, logs) -> bool:
        """Whether :meth:`on_epoch_end` sends this epoch to the oracle (its logs hold a
        finite objective value, and the oracle does not hold the epoch already)."""
        metrics = scalar_logs(logs)
        return (self.objective.has_value(metrics) and epoch not in self.skip_steps
                and math.isfinite(self.objective.get_value(metrics)))

    def on_epoch_end(self, epoch, logs=None):
        metrics = scalar_logs(logs)
        if self.objective.has_value(metrics) and epoch not in self.skip_steps:
            value = self.objective.get_value(metrics)
            if not math.isfinite(value):
                self._stop("non-finite objective")
                return
            # KerasTuner records a multi-objective's combined value under its own name.
            metrics.setdefault(self.objective.name, value)
            answer = self.oracle.update_trial(self.trial_id, metrics, step=int(epoch))
            self.reported = True
            if getattr(answer, "status", answer) == TrialStatus.STOPPED:
                self._stop("pruned")
        if self.deadline is not None and time.time() > self.deadline:
            self._stop("time budget")


class BestEpochWeights(keras.callbacks.Callback):
    """Save the weights of the best epoch so far, atomically (KerasTuner's
    ``SaveBestEpoch`` writes in place, so a kill could truncate the file). In a
    trial, the trial's ``EpochCheckpoint`` runs its epoch end, after the report.

    Args:
        objective: the oracle's objective; an epoch whose logs lack it is saved.
        filepath: the trial's best-weights file.
        best_value: the best value so far (a resumed trial keeps its own).
    """

    def __init__(self, objective, filepath: str, best_value: float | None = None):
        super().__init__()
        self.objective = objective
        self.filepath = filepath
        worst = float("-inf") if objective.direction == "max" else float("inf")
        self.best_value = worst if best_value is None else float(best_value)

    def improves(self, logs) -> bool:
        """Whether an epoch with these logs is saved: its objective value is better
        than the best so far, or its logs lack the objective."""
        if not self.objective.has_value(logs or {}):
            return True
        return self.objective.better_than(self.objective.get_value(logs), self.best_value)

    def best_value_after(self, logs) -> float:
        """The best value once an epoch with these logs has ended."""
        if self.objective.has_value(logs or {}) and self.improves(logs):
            return self.objective.get_value(logs)
        return self.best_value

    def save(self) -> None:
        """Write the model's weights as they are now to the best-weights file."""
        save_weights_atomically(self.model, self.filepath)

    def on_epoch_end(self, epoch, logs=None):
        if not self.improves(logs):
            return
        self.best_value = self.best_value_after(logs)
        self.save()


@contextlib.contextmanager
def quiet_round_continuation(trial):
    """Silence Keras's "Skipping variable loading for optimizer" while a Hyperband
    trial of a later round loads the earlier round's best weights.

    KerasTuner's Hyperband loads them into the freshly built (and compiled) model,
    whose optimizer is not built yet, so Keras skips the saved optimizer state and
    warns; the round goes on from the weights with a fresh optimizer (as a
    ``RecipeHyperModel``, which recompiles in ``fit``, does in any case).
    """
    with warnings.catch_warnings():
        if "tuner/trial_id" in trial.hyperparameters.values:
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        yield


def _steps_recorded(record, objective, execution: int) -> set[int]:
    """Epochs the oracle holds a value of for ``execution`` (steps with more values)."""
    name = objective.name
    if record is None or not record.metrics.exists(name):
        return set()
    return {int(obs.step) for obs in record.metrics.get_history(name)
            if len(np.atleast_1d(obs.value)) > execution}


def _same_values(recorded: dict, values: dict) -> bool:
    """Whether two records of a trial's hyperparameter values agree. Building the
    model may add the defaults of hyperparameters it registers late (to the
    process that built it only), so the values they both hold must be equal."""
    values = json.loads(json.dumps(values))
    shared = set(recorded) & set(values)
    return bool(shared or not (recorded or values)) and all(
        recorded[k] == values[k] for k in shared)


def _history_entry(result) -> dict:
    """A finished execution's result in a JSON-able form, for the trial's checkpoint."""
    if isinstance(result, keras.callbacks.History):
        return {"kind": "history", "data": {k: [float(v) for v in values]
                                             for k, values in result.history.items()}}
    if isinstance(result, dict):
        return {"kind": "value", "data": {k: float(v) for k, v in result.items()}}
    if isinstance(result, (int, float, np.floating)):
        return {"kind": "value", "data": float(result)}
    return {"kind": "history", "data": {}}


def _result_of(entry: dict):
    if entry.get("kind") == "value":
        return entry.get("data")
    history = keras.callbacks.History()
    history.history = dict(entry.get("data") or {})
    return history


@dataclass
class ExecutionPlan:
    """The ``fit`` arguments of one execution and the callbacks it added."""

    kwargs: dict
    nan_guard: NonFiniteLoss
    reporter: EpochReporter
    best: BestEpochWeights | None
    keras_best_saver: object | None
    checkpoint: EpochCheckpoint


@dataclass
class TrialRun:
    """One running trial: its checkpoint decision and its executions so far.

    Create it with :meth:`start`. ``messages`` holds what the search should
    print (a resume, a damaged checkpoint set aside).
    """

    trial: object
    folder: str
    oracle: object
    objective: object
    resume: object = None  # a ResumeState to continue from, or None
    executions_started: int = 0
    histories: list = field(default_factory=list)
    reported: bool = False
    stopped: str | None = None
    messages: list = field(default_factory=list)

    @classmethod
    def start(cls, trial, folder: str, oracle, objective, executions_per_trial: int) -> "TrialRun":
        """Read and check the trial's checkpoint in ``folder``; decide whether to resume."""
        run = cls(trial=trial, folder=folder, oracle=oracle, objective=objective)
        try:
            settled = settle_pending_checkpoint(
                folder, lambda execution: _steps_recorded(run._record(), objective, execution))
            run.messages.extend([settled] if settled else [])
            state = read_resume_state(folder)
            if state is not None:
                run._check_resumable(state, executions_per_trial)
        except DamagedCheckpoint as damage:
            names = set(checkpoint_files(folder))
            if os.path.dirname(os.path.abspath(damage.path)) == os.path.abspath(folder):
                names.add(os.path.basename(damage.path))
            where = set_aside(folder, sorted(names))
            run.messages.append(
                f"Trial {trial.trial_id}: its checkpoint is not resumable ({damage}); set aside "
                f"in {where}; the trial starts again from its first epoch.")
            return run
        if state is not None:
            run._resume_from(state, executions_per_trial)
        return run

    def _resume_from(self, state, executions_per_trial: int) -> None:
        """Continue the trial from ``state``; a state that records a pruning decision
        ends the trial as pruned (``stopped``), so it trains no further."""
        self.resume = state
        self.histories = list(state.histories)
        where = f"after epoch {state.epoch + 1}" + (
            f" of execution {state.execution + 1}" if executions_per_trial > 1 else "")
        if state.pruned_epoch is None:
            self.messages.append(f"Trial {self.trial.trial_id}: resuming from its checkpoint "
                                 f"{where}.")
            return
        self.stopped = "pruned"
        self.reported = state.reported
        self.messages.append(f"Trial {self.trial.trial_id}: its checkpoint says it was pruned "
                             f"{where}; it ends as pruned, without training further.")

    def _record(self):
        try:
            return self.oracle.get_trial(self.trial.trial_id)
        except KeyError:
            return None

    def _check_resumable(self, state, executions_per_trial: int) -> None:
        path = os.path.join(self.folder, state.state_file)
        if state.trial_id != str(self.trial.trial_id) or not _same_values(
                state.values, self.trial.hyperparameters.values):
            raise DamagedCheckpoint(path, f"it is trial {state.trial_id!r}'s with other "
                                          "hyperparameters")
        if state.execution >= executions_per_trial:
            raise DamagedCheckpoint(path, f"execution {state.execution + 1} of a trial with "
                                          f"{executions_per_trial}")
        check_restorable(self.folder, state)
        if state.reported:
            recorded = _steps_recorded(self._record(), self.objective, state.execution)
            last = max(recorded, default=-1)
            if not last - 1 <= state.epoch <= last:
                raise DamagedCheckpoint(
                    path, f"it says epoch {state.epoch + 1} ended, but the oracle recorded "
                          f"epochs up to {last + 1}")

    def finished_result(self, execution: int):
        """The result of an execution that finished before a resume, or ``None``."""
        if self.resume is not None and execution < self.resume.execution:
            return _result_of(self.histories[execution])
        return None

    def plan_execution(self, execution: int, kwargs: dict, deadline=None) -> ExecutionPlan:
        """The ``fit`` kwargs of ``execution`` with our callbacks and resume point."""
        kwargs = dict(kwargs)
        callbacks = list(kwargs.get("callbacks") or [])
        keras_saver = next((c for c in callbacks if kt_compat.is_best_epoch_saver(c)), None)
        callbacks = [c for c in callbacks if c is not keras_saver]
        resuming = self.resume is not None and self.resume.execution == execution
        best = None
        if keras_saver is not None:
            best_value = keras_saver.best_value
            if resuming and self.resume.best_value is not None:
                best_value = self.resume.best_value
            best = BestEpochWeights(self.objective, keras_saver.filepath, best_value)
        nan_guard = NonFiniteLoss()
        reporter = EpochReporter(self.oracle, self.trial.trial_id, self.objective, deadline,
                                 skip_steps=_steps_recorded(self._record(), self.objective,
                                                            execution))
        checkpoint = EpochCheckpoint(
            self.folder, restore=resuming, trial_id=self.trial.trial_id,
            hyperparameters=self.trial.hyperparameters.get_config(), execution=execution,
            histories=self.histories[:execution], best_epoch=best, reporter=reporter)
        # the checkpoint drives the reporter and the best-weights saver (one transaction)
        kwargs["callbacks"] = [*callbacks, nan_guard, checkpoint]
        if resuming:
            kwargs["initial_epoch"] = self.resume.epoch + 1
        return ExecutionPlan(kwargs, nan_guard, reporter, best, keras_saver, checkpoint)

    def finish_execution(self, plan: ExecutionPlan, result, *, reported=None, stopped=None,
                         best_value=None) -> None:
        """Record a finished execution (its result, whether it reported, was stopped,
        and its best value, which the next execution starts from)."""
        self.histories.append(_history_entry(result))
        self.reported = self.reported or bool(plan.reporter.reported if reported is None
                                              else reported)
        self.stopped = self.stopped or (plan.reporter.stopped if stopped is None else stopped)
        if plan.keras_best_saver is not None:
            plan.keras_best_saver.best_value = (plan.best.best_value if best_value is None
                                                else best_value)


__all__ = [
    "BestEpochWeights",
    "EpochReporter",
    "ExecutionPlan",
    "NonFiniteLoss",
    "TrialRun",
    "quiet_round_continuation",
]
