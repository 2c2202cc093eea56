"""KerasTuner tuners with pruning, crash-safe resume and per-trial process isolation.

:class:`TrainkitTunerMixin` adds to any ``keras_tuner.Tuner``:

* **Per-epoch reporting and pruning**: after every epoch the logs go to the
  oracle (``oracle.update_trial(..., step=epoch)``); a pruning oracle
  (:mod:`keras_trainkit.tuning.pruning`) may answer ``STOPPED``, which ends
  the trial's training after that epoch.
* **Crash-safe resume**: every epoch the model and optimizer state are written
  atomically to the trial folder (``resume.json`` naming a complete
  ``epoch_<k>.weights.h5``). KerasTuner itself re-queues a trial that was
  running when the search died; rerunning the script with the same
  ``directory``/``project_name`` then resumes that trial from its last epoch
  (``initial_epoch`` = last epoch + 1) instead of from scratch. Completed trials
  are neither lost nor run again (KerasTuner saves the oracle after each).
* **Non-finite training**: a NaN/Inf loss ends the trial as failed with the
  reason in ``trial.message``; the search goes on (up to KerasTuner's
  ``max_consecutive_failed_trials``).
* **Isolation** (``isolate_trials=True``): each trial runs in a fresh
  ``spawn``-ed subprocess (:mod:`keras_trainkit.tuning.isolation`), so host and
  GPU memory return to the system after every trial. Epoch results still reach
  the oracle as they happen, so pruning works; checkpoints and the best
  model's weights are written to the trial folder as usual.

The concrete tuners keep KerasTuner's names and arguments and add ``pruner``
and ``isolate_trials``. For Hyperband use ``keras_tuner.Hyperband`` itself
with the recipe (it prunes by its own brackets).
"""

from __future__ import annotations

import json
import math
import os
import time

import keras
import keras_tuner
import numpy as np
from keras_tuner.src import errors
from keras_tuner.src.engine import tuner_utils

from keras_trainkit.tuning.pruning import (
    STOPPED,
    PruningBayesianOptimizationOracle,
    PruningRandomSearchOracle,
)
from keras_trainkit.utils.files import write_atomically
from keras_trainkit.utils.validation import check_positive

RESUME_FILE = "resume.json"


def _scalar_logs(logs) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}


class EpochCheckpoint(keras.callbacks.Callback):
    """Write weights and optimizer state atomically at every epoch end; restore them
    at train begin when ``restore`` is true.

    The weights file is complete before ``resume.json`` names it, and
    ``resume.json`` is replaced with ``os.replace``, so a kill at any moment
    leaves either the previous or the new checkpoint, never a partial one.
    """

    def __init__(self, folder: str, restore: bool = False):
        super().__init__()
        self.folder = folder
        self.restore = restore

    @staticmethod
    def last_epoch(folder: str) -> int | None:
        """The last completed epoch recorded in ``folder``, or ``None``."""
        path = os.path.join(folder, RESUME_FILE)
        try:
            with open(path) as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            return None
        if not os.path.exists(os.path.join(folder, state.get("weights", ""))):
            return None
        return int(state["epoch"])

    def on_train_begin(self, logs=None):
        if not self.restore or self.last_epoch(self.folder) is None:
            return
        with open(os.path.join(self.folder, RESUME_FILE)) as handle:
            state = json.load(handle)
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.folder, state["weights"]))

    def on_epoch_end(self, epoch, logs=None):
        name = f"epoch_{epoch}.weights.h5"
        tmp = os.path.join(self.folder, f".{name}.tmp.weights.h5")
        self.model.save_weights(tmp)
        os.replace(tmp, os.path.join(self.folder, name))
        previous = None
        path = os.path.join(self.folder, RESUME_FILE)
        if os.path.exists(path):
            with open(path) as handle:
                previous = json.load(handle).get("weights")
        write_atomically(path, json.dumps({"epoch": int(epoch), "weights": name}).encode())
        if previous and previous != name:
            try:
                os.remove(os.path.join(self.folder, previous))
            except FileNotFoundError:
                pass


def before_checkpoint(callbacks: list, reporter) -> list:
    """``callbacks`` (ending with an :class:`EpochCheckpoint`) with ``reporter`` put
    just before the checkpoint, so each epoch reaches the oracle before it is
    checkpointed. A resumed trial then never misses an epoch's metrics."""
    if not callbacks or not isinstance(callbacks[-1], EpochCheckpoint):
        raise ValueError("Argument `callbacks` must end with an EpochCheckpoint. "
                         f"Received: callbacks={callbacks!r}")
    return [*callbacks[:-1], reporter, callbacks[-1]]


class NonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first batch whose loss is NaN or Inf, remembering where."""

    def __init__(self):
        super().__init__()
        self.where = None

    def on_train_begin(self, logs=None):
        self.where = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = (getattr(self, "epoch", 0), batch, float(loss))
            self.model.stop_training = True


class TrainkitTunerMixin:
    """Pruning, crash-safe resume, NaN handling and optional process isolation for a
    ``keras_tuner.Tuner`` (put it first among the bases).

    Args:
        isolate_trials: run each trial in a fresh subprocess.
        time_budget: seconds from the start of ``search`` after which no new
            trial starts and running trials stop at their next epoch end.
        progress: ``progress(tuner, trial)`` called after every trial (e.g. to
            print "trial k of N, best so far, pruned").
    """

    def __init__(self, *args, isolate_trials: bool = False, time_budget: float | None = None,
                 progress=None, **kwargs):
        if not isinstance(isolate_trials, bool):
            raise TypeError(f"Argument `isolate_trials` must be a bool. Received: isolate_trials={isolate_trials!r}")
        if time_budget is not None:
            check_positive("time_budget", time_budget)
        self.isolate_trials = isolate_trials
        self.time_budget = time_budget
        self.progress = progress
        self._deadline = None
        super().__init__(*args, **kwargs)

    def search(self, *fit_args, **fit_kwargs):
        if self.time_budget is not None:
            self._deadline = time.time() + self.time_budget
            if hasattr(self.oracle, "deadline"):  # in-process or chief oracle
                self.oracle.deadline = self._deadline
        return super().search(*fit_args, **fit_kwargs)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.progress is not None:
            self.progress(self, trial)

    # -- per-epoch reporting -------------------------------------------------
    def report_epoch(self, trial, epoch: int, logs) -> bool:
        """Send an epoch's logs to the oracle; return ``True`` if the trial must stop."""
        metrics = _scalar_logs(logs)
        out_of_time = self._deadline is not None and time.time() > self._deadline
        if self.oracle.objective.name not in metrics:
            return out_of_time
        if not math.isfinite(metrics[self.oracle.objective.name]):
            return True
        reported = self.oracle.update_trial(trial.trial_id, metrics, step=epoch)
        return out_of_time or getattr(reported, "status", None) == STOPPED

    def on_epoch_end(self, trial, model, epoch, logs=None):
        super().on_epoch_end(trial, model, epoch, logs=logs)
        if self.report_epoch(trial, epoch, logs):
            model.stop_training = True

    # -- running a trial -----------------------------------------------------
    def _trial_callbacks(self, trial, original_callbacks, execution):
        """Fresh copies of the user's callbacks plus the tuner's own.

        The epoch checkpoint comes last: insert the callback that reports the
        epoch to the oracle with :func:`before_checkpoint`, so a kill between the
        two never leaves a checkpoint whose epoch the oracle has not recorded.
        """
        folder = self.get_trial_dir(trial.trial_id)
        resume_epoch = EpochCheckpoint.last_epoch(folder)
        callbacks = self._deepcopy_callbacks(original_callbacks)
        self._configure_tensorboard_dir(callbacks, trial, execution)
        best = tuner_utils.SaveBestEpoch(objective=self.oracle.objective,
                                         filepath=self._get_checkpoint_fname(trial.trial_id))
        if resume_epoch is not None:
            history = self.oracle.get_trial(trial.trial_id).metrics
            name = self.oracle.objective.name
            if history.exists(name):
                best.best_value = history.get_best_value(name)
        nan_guard = NonFiniteLoss()
        callbacks += [nan_guard, best, EpochCheckpoint(folder, restore=resume_epoch is not None)]
        return callbacks, nan_guard, resume_epoch

    def run_trial(self, trial, *args, **kwargs):
        # Which worker ran the trial (visible in parallel searches).
        with open(os.path.join(self.get_trial_dir(trial.trial_id), "runner.json"), "w") as handle:
            json.dump({"tuner_id": self.tuner_id, "pid": os.getpid(),
                       "isolated": self.isolate_trials}, handle)
        if self.isolate_trials:
            from keras_trainkit.tuning.isolation import run_isolated_trial

            return run_isolated_trial(self, trial, args, kwargs)
        original_callbacks = kwargs.pop("callbacks", [])
        histories = []
        for execution in range(self.executions_per_trial):
            callbacks, nan_guard, resume_epoch = self._trial_callbacks(
                trial, original_callbacks, execution)
            callbacks = before_checkpoint(callbacks, tuner_utils.TunerCallback(self, trial))
            fit_kwargs = dict(kwargs, callbacks=callbacks)
            if resume_epoch is not None:
                fit_kwargs["initial_epoch"] = resume_epoch + 1
            histories.append(self._build_and_fit_model(trial, *args, **fit_kwargs))
            self.raise_if_not_finite(nan_guard.where)
        return histories

    @staticmethod
    def raise_if_not_finite(where) -> None:
        """Fail the trial (not the search) when training met a non-finite loss."""
        if where is not None:
            epoch, batch, loss = where
            raise errors.FailedTrialError(
                f"non-finite loss ({loss}) at epoch {epoch}, batch {batch}")

    def _run_and_update_trial(self, trial, *fit_args, **fit_kwargs):
        # Results reached the oracle epoch by epoch (``on_epoch_end``);
        # KerasTuner's default would report them again and warn.
        results = self.run_trial(trial, *fit_args, **fit_kwargs)
        if not self.oracle.get_trial(trial.trial_id).metrics.exists(self.oracle.objective.name):
            self.oracle.update_trial(
                trial.trial_id,
                tuner_utils.convert_to_metrics_dict(results, self.oracle.objective),
                step=tuner_utils.get_best_step(results, self.oracle.objective))


class RandomSearch(TrainkitTunerMixin, keras_tuner.Tuner):
    """``keras_tuner.RandomSearch`` with pruning, resume and isolation.

    Args:
        hypermodel: a ``HyperModel`` (e.g. ``RecipeHyperModel``) or build function.
        objective, max_trials, seed, hyperparameters, tune_new_entries,
        allow_new_entries, max_retries_per_trial, max_consecutive_failed_trials:
            as for ``keras_tuner.RandomSearch``.
        pruner: ``"median"``, ``"asha"``, a ``Pruner`` or ``None``.
        start_from_defaults: the first trial takes every hyperparameter's default
            (a known recipe to search around) instead of a random sample.
        isolate_trials: run each trial in a fresh subprocess.
        **kwargs: ``directory``, ``project_name``, ``overwrite``,
            ``executions_per_trial``, ... as for ``keras_tuner.Tuner``.

    Example:
        >>> tuner = RandomSearch(RecipeHyperModel((40,), 10), max_trials=20,
        ...                      pruner="median", directory="runs")  # doctest: +SKIP
        >>> tuner.search(x, y, validation_data=(x_val, y_val))  # doctest: +SKIP
    """

    def __init__(self, hypermodel=None, objective="val_accuracy", max_trials=10, seed=None,
                 hyperparameters=None, tune_new_entries=True, allow_new_entries=True,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3, pruner=None,
                 start_from_defaults=False, isolate_trials=False, **kwargs):
        oracle = PruningRandomSearchOracle(
            objective=objective, max_trials=max_trials, seed=seed,
            hyperparameters=hyperparameters, tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries, max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials, pruner=pruner,
            start_from_defaults=start_from_defaults)
        super().__init__(oracle=oracle, hypermodel=hypermodel, isolate_trials=isolate_trials,
                         **kwargs)


class BayesianOptimization(TrainkitTunerMixin, keras_tuner.Tuner):
    """``keras_tuner.BayesianOptimization`` with pruning, resume and isolation.

    Args: as :class:`RandomSearch`, plus ``num_initial_points``, ``alpha`` and
    ``beta`` of ``keras_tuner.BayesianOptimization``. Pruned trials count as
    observations with the best score they reached.
    """

    def __init__(self, hypermodel=None, objective="val_accuracy", max_trials=10,
                 num_initial_points=None, alpha=1e-4, beta=2.6, seed=None,
                 hyperparameters=None, tune_new_entries=True, allow_new_entries=True,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3, pruner=None,
                 start_from_defaults=False, isolate_trials=False, **kwargs):
        oracle = PruningBayesianOptimizationOracle(
            objective=objective, max_trials=max_trials, num_initial_points=num_initial_points,
            alpha=alpha, beta=beta, seed=seed, hyperparameters=hyperparameters,
            tune_new_entries=tune_new_entries, allow_new_entries=allow_new_entries,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials, pruner=pruner,
            start_from_defaults=start_from_defaults)
        super().__init__(oracle=oracle, hypermodel=hypermodel, isolate_trials=isolate_trials,
                         **kwargs)


__all__ = [
    "BayesianOptimization",
    "EpochCheckpoint",
    "NonFiniteLoss",
    "RandomSearch",
    "TrainkitTunerMixin",
]
