"""Any KerasTuner tuner with crash-safe resume, isolation, a time budget and
per-epoch, pruning-aware reporting.

:class:`TrainkitTunerMixin` adds to a ``keras_tuner.Tuner`` class (put it
first among the bases), or :func:`trainkit_tuner` makes such a class from one:

* **Per-epoch reporting and pruning**: every epoch's logs go to
  ``oracle.update_trial(trial_id, logs, step=epoch)`` through a Keras callback
  (:class:`~keras_trainkit.tuning.trial_plan.EpochReporter`); an oracle that
  answers ``STOPPED`` (a pruning oracle of :mod:`keras_trainkit.tuning.oracles`,
  or any oracle of one's own) ends that trial's training after the epoch.
  With ``executions_per_trial > 1`` each epoch's value is the mean over the
  executions that reached it; a pruned trial runs no further executions.
* **Crash-safe resume**: every epoch the model and optimizer state are written
  atomically to the trial folder's ``checkpoint.npz``, in the one checkpoint
  format (:mod:`keras_trainkit.tuning.epoch_checkpoint`), with the trial's id
  and hyperparameters. Rerunning the script with the same
  ``directory``/``project_name`` reloads the search (also when it was killed in
  its first trial, before KerasTuner's ``tuner0.json`` existed), re-runs the
  interrupted trial with the same hyperparameters and continues it from its
  last epoch, after checking that the checkpoint is that trial's and agrees with
  the oracle's record; a damaged checkpoint or record is reported, set aside
  and the trial run again (:mod:`keras_trainkit.tuning.search_files`). It says
  which trial resumed at which epoch; a trial killed after its pruned epoch ends
  as pruned. The search's records (``oracle.json``, ``trial.json``,
  ``tuner0.json``) are written atomically, whatever the oracle.
* **Isolation** (``isolate_trials=True``): each execution of a trial runs in a
  fresh subprocess (:mod:`keras_trainkit.tuning.isolation`) that applies the
  tuner's own build checks; host and GPU memory return to the system after
  every execution.
* **Time budget** (``time_budget`` seconds from the start of ``search``): no
  trial starts after it, and running trials stop at their next epoch end.
* **Results**: a non-finite loss fails the trial (``non-finite loss (...) at
  epoch e, batch b``); results are validated as KerasTuner validates them
  (``FatalTypeError`` for a ``run_trial`` returning a string) and scored as
  KerasTuner scores them (a float or dict that ``fit`` returns, not the best
  epoch: :mod:`~keras_trainkit.tuning.returned_score`); a search whose trials
  all failed raises with the first failure.

The ready-made tuners keep KerasTuner's names and arguments, add ``pruner``
and ``start_from_defaults`` to the oracles that take them, and default the
objective to a ``RecipeHyperModel``'s own (``"val_accuracy"`` for classification,
``"val_loss"`` with a loss of one's own), else ``"val_accuracy"``:
:class:`RandomSearch`, :class:`BayesianOptimization`, :class:`GridSearch`, :class:`Hyperband`.

A new tuner (for instance one backed by Optuna) gets all of this by writing
its oracle (a ``keras_tuner.Oracle`` whose ``update_trial`` may answer
``STOPPED``) and declaring::

    class OptunaSearch(TrainkitTunerMixin, keras_tuner.Tuner):
        oracle_class = OptunaOracle   # built from the constructor's oracle arguments
        default_objective = "val_accuracy"

With ``oracle_class`` set, the mixin builds the oracle from the arguments the
oracle's constructor accepts and gives the rest to ``keras_tuner.Tuner``;
without it, it passes every argument to the tuner class as it is (so
``trainkit_tuner(keras_tuner.Hyperband)(hypermodel, max_epochs=9, ...)`` works).
"""

from __future__ import annotations

import inspect
import os
import time
import traceback
import warnings

import keras
import keras_tuner
from keras_tuner import errors
from keras_tuner.engine.trial import TrialStatus

from keras_trainkit._compat import keras_tuner as kt_compat
from keras_trainkit.tuning.epoch_checkpoint import EpochCheckpoint
from keras_trainkit.tuning.isolation import run_isolated_execution
from keras_trainkit.tuning.oracles import (
    HyperbandOracle,
    PruningBayesianOptimizationOracle,
    PruningGridSearchOracle,
    PruningOracleMixin,
    PruningRandomSearchOracle,
)
from keras_trainkit.tuning.recipe import RecipeHyperModel
from keras_trainkit.tuning.returned_score import returned_report, score_returned_values
from keras_trainkit.tuning.search_files import repair_search_files
from keras_trainkit.tuning.trial_models import load_trial_model
from keras_trainkit.tuning.trial_plan import NonFiniteLoss, TrialRun, quiet_round_continuation
from keras_trainkit.utils.files import write_json_atomically
from keras_trainkit.utils.validation import check_positive

# While KerasTuner's chief/worker protocol idles a worker (Hyperband waiting
# for a round to finish), how long it waits before asking again.
_IDLE_SECONDS = 0.5
_FAILED = (TrialStatus.FAILED, TrialStatus.INVALID)


def _is_worker() -> bool:
    """Whether this process is a worker of KerasTuner's chief/worker protocol
    (``KERASTUNER_ORACLE_IP`` set, ``KERASTUNER_TUNER_ID`` not the chief)."""
    return ("KERASTUNER_ORACLE_IP" in os.environ
            and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", ""))


def _is_chief() -> bool:
    return ("KERASTUNER_ORACLE_IP" in os.environ
            and "chief" in os.environ.get("KERASTUNER_TUNER_ID", ""))


def _keras_tuner_base(cls) -> type:
    """The first class of ``cls``'s bases that comes from KerasTuner."""
    return next(c for c in cls.__mro__ if c.__module__.split(".")[0] == "keras_tuner")


def _oracle_parameters(oracle_class) -> set[str]:
    names = set()
    for cls in oracle_class.__mro__:
        if "__init__" in vars(cls):
            names |= {p.name for p in inspect.signature(cls.__init__).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names - {"self"}


def _check_tuner_arguments(isolate_trials, time_budget, progress, kwargs: dict) -> None:
    """Check our tuner arguments and KerasTuner's ``executions_per_trial`` (in ``kwargs``),
    before the tuner makes its folder."""
    if not isinstance(isolate_trials, bool):
        raise TypeError("Argument `isolate_trials` must be a bool. "
                        f"Received: isolate_trials={isolate_trials!r}")
    if time_budget is not None:
        check_positive("time_budget", time_budget)
    if progress is not None and not callable(progress):
        raise TypeError("Argument `progress` must be None or a function progress(tuner, trial). "
                        f"Received: progress={progress!r}")
    if "executions_per_trial" in kwargs:  # 0 runs nothing and every trial fails
        check_positive("executions_per_trial", kwargs["executions_per_trial"], integer=True)
    if isolate_trials and kwargs.get("distribution_strategy") is not None:
        raise ValueError(
            "Argument `distribution_strategy` cannot be used with isolate_trials=True: a "
            "tf.distribute strategy cannot be sent to the trial's process. Create the "
            "strategy inside the HyperModel's build, or set isolate_trials=False. "
            f"Received: distribution_strategy={kwargs['distribution_strategy']!r}")


class TrainkitTunerMixin(kt_compat.ExecutionHook):
    """Resume, isolation, a time budget and pruning-aware reporting for any
    ``keras_tuner.Tuner`` (put it first among the bases).

    Args:
        isolate_trials: run each execution of a trial in a fresh subprocess.
        time_budget: seconds from the start of ``search`` after which no new
            trial starts and running trials stop at their next epoch end
            (recorded as completed, scored by their best epoch so far).
        progress: ``progress(tuner, trial)`` called after every trial (e.g. to
            print "trial k of N, best so far, pruned").
        *args, **kwargs: the tuner class's own arguments.

    Class attributes:
        oracle_class: when set, the oracle is built from the constructor's
            arguments that this class accepts (see the module docstring).
        default_objective: the objective when none is given (with
            ``oracle_class``).
    """

    oracle_class = None
    default_objective = None

    def __init__(self, *args, isolate_trials: bool = False, time_budget: float | None = None,
                 progress=None, **kwargs):
        _check_tuner_arguments(isolate_trials, time_budget, progress, kwargs)
        self.isolate_trials = isolate_trials
        self.time_budget = time_budget
        self.progress = progress
        self.trial_runs: dict[str, TrialRun] = {}
        self._deadline = None
        if self.oracle_class is None:
            super().__init__(*args, **kwargs)
        else:
            oracle, tuner_kwargs = self._oracle_from_arguments(args, kwargs)
            keras_tuner.Tuner.__init__(self, oracle=oracle, **tuner_kwargs)
        if not _is_worker():  # a worker's oracle is the chief's, over gRPC
            kt_compat.write_records_atomically(self.oracle)
            score_returned_values(self.oracle)
        if (not kwargs.get("overwrite") and not _is_worker()
                and not os.path.exists(kt_compat.tuner_state_path(self))
                and os.path.exists(kt_compat.oracle_state_path(self.oracle))):
            # KerasTuner reloads only once the tuner's file exists, which it first
            # writes when trial 0 ends: a search killed in its first trial would
            # otherwise start again as a new search over the same folder.
            print(f"Reloading the search from {kt_compat.oracle_state_path(self.oracle)} "
                  "(it was stopped in its first trial)")
            self.reload()

    def _oracle_from_arguments(self, args, kwargs):
        base = _keras_tuner_base(type(self))
        signature = inspect.signature(base.__init__)
        # ``keras_tuner.Tuner`` itself takes the oracle first: here the mixin makes it.
        signature = signature.replace(parameters=[p for p in signature.parameters.values()
                                                  if p.name != "oracle"])
        arguments = signature.bind(self, *args, **kwargs).arguments
        arguments.pop("self")
        var_keyword = next((p.name for p in signature.parameters.values()
                            if p.kind is p.VAR_KEYWORD), None)
        rest = dict(arguments.pop(var_keyword, {}))
        tuner_kwargs = {"hypermodel": arguments.pop("hypermodel", None)}
        accepted = _oracle_parameters(self.oracle_class)
        oracle_kwargs = {}
        for name, value in [*arguments.items(), *rest.items()]:
            (oracle_kwargs if name in accepted else tuner_kwargs)[name] = value
        if "objective" not in oracle_kwargs:
            hypermodel = tuner_kwargs["hypermodel"]
            oracle_kwargs["objective"] = (hypermodel.objective
                                          if isinstance(hypermodel, RecipeHyperModel)
                                          else self.default_objective)
        return self.oracle_class(**oracle_kwargs), tuner_kwargs

    # -- saving and reloading ------------------------------------------------------
    def save(self):
        """Save the search as ``BaseTuner.save`` does (the oracle's state, then the
        tuner's), but write the tuner's state file whole or not at all: KerasTuner
        rewrites it in place after every trial, and a worker of the same search
        starting meanwhile (or a rerun after a kill mid-write) would read it empty."""
        if not _is_worker():
            self.oracle.save()
        write_json_atomically(kt_compat.tuner_state_path(self), self.get_state())

    def reload(self):
        """Reload the search, after checking its files (damaged ones are reported,
        set aside and their trials re-run, or the search refuses naming the file)."""
        if not _is_worker():
            notes = repair_search_files(
                self.project_dir, tuner_state_path=kt_compat.tuner_state_path(self),
                best_weights_name=kt_compat.BEST_WEIGHTS_FILE,
                fresh_tuner_state=self.get_state())
            for note in notes:
                print(note, flush=True)
            if not isinstance(self.oracle, PruningOracleMixin):  # ours reload so already
                # KerasTuner's Oracle.reload finds the trials by a glob of the project's
                # path: one with "[", "*" or "?" in it lost them all (kt_compat.reload_oracle).
                kt_compat.reload_by_listing(self.oracle)
        super().reload()

    # -- the search loop -------------------------------------------------------
    def search(self, *fit_args, **fit_kwargs):
        """Run trials until the oracle stops, the time budget is spent, or the
        trials all failed (then raise with the first failure)."""
        self._deadline = None if self.time_budget is None else time.time() + self.time_budget
        if hasattr(self.oracle, "deadline"):  # our oracles, in-process or the chief's
            self.oracle.deadline = self._deadline
        if _is_chief():  # the chief only serves the oracle
            return super().search(*fit_args, **fit_kwargs)
        if "verbose" in fit_kwargs and not _is_worker():
            self.oracle.verbose = fit_kwargs["verbose"]
        self.save()  # from the first trial on, a rerun reloads this search
        self.on_search_begin()
        ended = []
        while self._deadline is None or time.time() <= self._deadline:
            self.pre_create_trial()
            trial = self.oracle.create_trial(self.tuner_id)
            if trial.status == TrialStatus.STOPPED:
                break
            if trial.status == TrialStatus.IDLE:
                time.sleep(_IDLE_SECONDS)
                continue
            self.on_trial_begin(trial)
            self._run_and_record(trial, fit_args, fit_kwargs)
            self.on_trial_end(trial)
            ended.append(trial)
        self.on_search_end()
        self._raise_if_every_trial_failed(ended)

    def _run_and_record(self, trial, fit_args, fit_kwargs) -> None:
        """Run ``trial`` and record its results; a failure marks it (FatalError ends
        the search), as KerasTuner's own loop does."""
        self._trial_run(trial)
        try:
            results = self.run_trial(trial, *fit_args, **fit_kwargs)
            self._record_results(trial, results)
            trial.status = TrialStatus.COMPLETED
        except Exception as error:
            if isinstance(error, errors.FatalError):
                raise
            trial.status = (TrialStatus.FAILED if isinstance(error, errors.FailedTrialError)
                            else TrialStatus.INVALID)
            trial.message = traceback.format_exc()
        finally:
            self.trial_runs.pop(trial.trial_id, None)

    def _record_results(self, trial, results) -> None:
        objective = self.oracle.objective
        run = self.trial_runs.get(trial.trial_id)
        if run is not None and run.reported:  # the epochs reached the oracle one by one
            if results is not None:
                kt_compat.check_trial_results(results, objective, "Tuner.run_trial()")
                report = returned_report(results, objective)
                if report:  # a float or dict returned: the score, as KerasTuner's
                    self.oracle.update_trial(trial.trial_id, report)
            return
        if self.oracle.get_trial(trial.trial_id).metrics.exists(objective.name):
            warnings.warn(
                "The use case of calling `self.oracle.update_trial(trial_id, metrics)` in "
                "`Tuner.run_trial()` to report the metrics is deprecated by KerasTuner. "
                "Please remove the call and do 'return metrics' in `Tuner.run_trial()` "
                "instead.", DeprecationWarning, stacklevel=3)
            return
        kt_compat.check_trial_results(results, objective, "Tuner.run_trial()")
        self.oracle.update_trial(trial.trial_id,
                                 kt_compat.metrics_from_results(results, objective),
                                 step=kt_compat.best_step_of_results(results, objective))

    def _raise_if_every_trial_failed(self, ended) -> None:
        best = self.oracle.get_best_trials(1)
        if best and best[0].status == TrialStatus.COMPLETED:
            return
        # A worker of a parallel search sees only its own trials' messages.
        trials = ended if _is_worker() else list(self.oracle.trials.values())
        finished = [t for t in trials if t.status != TrialStatus.RUNNING]
        if finished and all(t.status in _FAILED for t in finished):
            first = min(finished, key=lambda t: (len(t.trial_id), t.trial_id))
            raise RuntimeError(
                f"All {len(finished)} trials of the search failed; none has a score. The "
                f"first, trial {first.trial_id}, failed with:\n{first.message}")

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.progress is not None:
            self.progress(self, trial)

    # -- one execution of a trial --------------------------------------------
    def _trial_run(self, trial) -> TrialRun:
        run = self.trial_runs.get(trial.trial_id)
        if run is None:
            folder = self.get_trial_dir(trial.trial_id)
            write_json_atomically(os.path.join(folder, "runner.json"),
                                  {"tuner_id": self.tuner_id, "pid": os.getpid(),
                                   "isolated": self.isolate_trials})
            run = TrialRun.start(trial, folder, self.oracle, self.oracle.objective,
                                 self.executions_per_trial)
            for message in run.messages:
                print(message, flush=True)
            self.trial_runs[trial.trial_id] = run
        return run

    def fit_execution(self, trial, args, kwargs):
        """Build, train and evaluate one execution of ``trial`` (called by
        ``Tuner.run_trial`` once per execution, through KerasTuner's
        ``_build_and_fit_model``): resumes it, reports its epochs, runs it in a
        subprocess with ``isolate_trials``."""
        run = self._trial_run(trial)
        execution = run.executions_started
        run.executions_started += 1
        finished = run.finished_result(execution)
        if finished is not None:
            return finished
        if run.stopped:  # pruned (before a kill too) or out of time: no further execution
            return keras.callbacks.History()
        plan = run.plan_execution(execution, kwargs, deadline=self._deadline)
        if self.isolate_trials:
            result, where, reported, stopped, best = run_isolated_execution(
                self, trial, args, plan)
            run.finish_execution(plan, result, reported=reported, stopped=stopped,
                                 best_value=best)
        else:
            with quiet_round_continuation(trial):
                result = kt_compat.build_and_fit(self, trial, args, plan.kwargs)
            where = plan.nan_guard.where
            run.finish_execution(plan, result)
        self.raise_if_not_finite(where)
        return result

    @staticmethod
    def raise_if_not_finite(where) -> None:
        """Fail the trial (not the search) when training met a non-finite loss."""
        if where is not None:
            epoch, batch, loss = where
            raise errors.FailedTrialError(
                f"non-finite loss ({loss}) at epoch {epoch}, batch {batch}")

    # -- loading trained models ----------------------------------------------
    def load_model(self, trial):
        """The trial's model with its best epoch's weights (see :func:`load_trial_model`)."""
        return load_trial_model(self, trial)


_DYNAMIC_CLASSES: dict[type, type] = {}


def _rebuild_tuner(tuner_class, state):
    """Unpickle an instance of a :func:`trainkit_tuner` class (made anew in this process)."""
    tuner = object.__new__(trainkit_tuner(tuner_class))
    tuner.__dict__.update(state)
    return tuner


def trainkit_tuner(tuner_class: type) -> type:
    """``tuner_class`` (any ``keras_tuner.Tuner`` subclass) with :class:`TrainkitTunerMixin`.

    The returned class takes the tuner class's arguments plus ``isolate_trials``,
    ``time_budget`` and ``progress``; the same class is returned for the same
    ``tuner_class``, and its instances pickle (for isolated trials) when
    ``tuner_class`` itself can be imported.

    Example:
        >>> import keras_tuner
        >>> Hyperband = trainkit_tuner(keras_tuner.Hyperband)
        >>> issubclass(Hyperband, TrainkitTunerMixin)
        True
    """
    if not (isinstance(tuner_class, type) and issubclass(tuner_class, keras_tuner.Tuner)):
        raise TypeError("Argument `tuner_class` must be a keras_tuner.Tuner subclass. "
                        f"Received: tuner_class={tuner_class!r}")
    if issubclass(tuner_class, TrainkitTunerMixin):
        return tuner_class
    if tuner_class not in _DYNAMIC_CLASSES:
        def __reduce__(self):
            return _rebuild_tuner, (tuner_class, self.__dict__)

        _DYNAMIC_CLASSES[tuner_class] = type(
            f"Trainkit{tuner_class.__name__}", (TrainkitTunerMixin, tuner_class),
            {"__module__": __name__, "__reduce__": __reduce__,
             "__doc__": f"``{tuner_class.__module__}.{tuner_class.__qualname__}`` with "
                        "resume, isolation, a time budget and pruning-aware reporting "
                        "(see :class:`TrainkitTunerMixin`)."})
    return _DYNAMIC_CLASSES[tuner_class]


class RandomSearch(TrainkitTunerMixin, keras_tuner.RandomSearch):
    """``keras_tuner.RandomSearch`` with pruning, resume, isolation and a time budget.

    Args:
        hypermodel: a ``HyperModel`` (e.g. ``RecipeHyperModel``) or build function.
        objective: as for KerasTuner; default ``"val_accuracy"``.
        max_trials, seed, hyperparameters, tune_new_entries, allow_new_entries,
        max_retries_per_trial, max_consecutive_failed_trials:
            as for ``keras_tuner.RandomSearch``.
        pruner: ``"median"``, ``"asha"``, a ``Pruner`` or ``None``.
        start_from_defaults: the first trial takes every hyperparameter's default
            (a known recipe to search around) instead of a random sample.
        isolate_trials, time_budget, progress: see :class:`TrainkitTunerMixin`.
        **kwargs: ``directory``, ``project_name``, ``overwrite``,
            ``executions_per_trial``, ``max_model_size``, ... as for
            ``keras_tuner.Tuner``.

    Example:
        >>> tuner = RandomSearch(RecipeHyperModel((40,), 10), max_trials=20,
        ...                      pruner="median", directory="runs")  # doctest: +SKIP
        >>> tuner.search(x, y, validation_data=(x_val, y_val))  # doctest: +SKIP
    """

    oracle_class = PruningRandomSearchOracle
    default_objective = "val_accuracy"


class BayesianOptimization(TrainkitTunerMixin, keras_tuner.BayesianOptimization):
    """``keras_tuner.BayesianOptimization`` with pruning, resume, isolation and a time budget.

    Args: as :class:`RandomSearch`, plus ``num_initial_points``, ``alpha`` and
    ``beta`` of ``keras_tuner.BayesianOptimization``. Pruned trials count as
    observations with the best score they reached.
    """

    oracle_class = PruningBayesianOptimizationOracle
    default_objective = "val_accuracy"


class GridSearch(TrainkitTunerMixin, keras_tuner.GridSearch):
    """``keras_tuner.GridSearch`` with pruning, resume, isolation and a time budget.

    Args: as :class:`RandomSearch` (the grid's first trial is always every
    hyperparameter's default). Every hyperparameter must be discrete (a
    choice, a boolean, an int or a float with a ``step``).
    """

    oracle_class = PruningGridSearchOracle
    default_objective = "val_accuracy"


class Hyperband(TrainkitTunerMixin, keras_tuner.Hyperband):
    """``keras_tuner.Hyperband`` with resume, isolation, a time budget,
    ``start_from_defaults`` and our seeding (:func:`~keras_trainkit.tuning.seed_oracle`).

    Args: as ``keras_tuner.Hyperband`` (``max_epochs``, ``factor``,
    ``hyperband_iterations``, ...), plus ``start_from_defaults`` and the
    arguments of :class:`TrainkitTunerMixin`; the objective defaults to
    ``"val_accuracy"``. Hyperband stops trials by its own brackets, so it takes
    no ``pruner``. ``max_trials`` caps the number of trials.
    """

    oracle_class = HyperbandOracle
    default_objective = "val_accuracy"


__all__ = [
    "BayesianOptimization",
    "EpochCheckpoint",
    "GridSearch",
    "Hyperband",
    "NonFiniteLoss",
    "RandomSearch",
    "TrainkitTunerMixin",
    "load_trial_model",
    "trainkit_tuner",
]
