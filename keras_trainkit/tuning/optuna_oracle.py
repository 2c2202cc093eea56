"""A KerasTuner oracle that asks an Optuna study for every trial's values.

:class:`OptunaOracle` keeps KerasTuner's records (``trial_<id>/trial.json``,
``oracle.json``, the best models) and Optuna's (the study in its storage)
side by side, one trial for one trial: KerasTuner's trial id is the Optuna
trial's number, zero-padded, so every process of a search names its trials
uniquely, and the study decides which trial comes next.

* **Values**: each active hyperparameter of the oracle's space is asked from
  the Optuna trial in registration order (:mod:`~keras_trainkit.tuning.optuna_space`),
  so the parameters of an inactive conditional scope (another optimizer's
  ``beta_1``) are never asked. Hyperparameters a model registers only while
  it is built (or in ``HyperModel.fit``) are asked then, from the same trial;
  with ``tune_new_entries=False`` they keep their defaults, as KerasTuner's,
  and in the defaults trial of ``start_from_defaults`` they are recorded in
  the study at their defaults.
* **Epochs**: every epoch's objective reaches the study (as ``trial.report``;
  with ``executions_per_trial > 1``, the mean over the executions so far, as
  KerasTuner records it, each execution overwriting the last); an Optuna
  pruner (``optuna.pruners.*``) or one of our rules (``"median"``,
  ``"asha"``, a :class:`~keras_trainkit.tuning.Pruner`, applied to every
  worker's trials through the study) can stop a trial, during its first
  execution (as with our other oracles). A pruned trial ends ``PRUNED`` in the
  study (valued by Optuna at its last epoch) and ``COMPLETED`` with its score in
  KerasTuner, listed in ``oracle.pruned_trials`` as with our other oracles.
* **Many processes**: ``max_trials`` counts the study's trials (every
  worker's); a trial that a dead worker left is failed by the storage's
  heartbeat and run again under a new number (:mod:`~keras_trainkit.tuning.optuna_storage`).
  A rerun of a killed process continues its own interrupted trial (same id,
  from its last epoch checkpoint) when the trial's Optuna record says this
  host ran it in a process that is gone.
"""

from __future__ import annotations

import os
import socket
import time
import warnings

import keras_tuner
import numpy as np
from keras_tuner.engine.trial import Trial, TrialStatus

from keras_trainkit._compat import keras_tuner as kt_compat
from keras_trainkit.tuning.optuna_required import optuna
from keras_trainkit.tuning.optuna_samplers import get_sampler
from keras_trainkit.tuning.optuna_space import (
    AskingHyperParameters,
    active_values,
    check_shared_names,
    fix_value,
    optuna_params,
    suggest,
)
from keras_trainkit.tuning.optuna_storage import (
    Heartbeat,
    check_heartbeat,
    check_storage,
    check_study_holds,
    fail_dead_workers_trials,
    has_heartbeat,
    make_storage,
    storage_trial_id,
)
from keras_trainkit.tuning.oracles import RUNNING, STOPPED, PruningOracleMixin
from keras_trainkit.tuning.pareto import rank_trials
from keras_trainkit.tuning.pruning import Pruner
from keras_trainkit.tuning.returned_score import ReturnedScore, returned_metrics
from keras_trainkit.utils.validation import check_condition, check_positive, check_type

TrialState = optuna.trial.TrialState
IDLE = TrialStatus.IDLE
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING,
            TrialState.FAIL)
SURPLUS_ATTR = "trainkit_surplus"
WORKER_ATTR = "trainkit_worker"
DEFAULTS_ATTR = "trainkit_defaults"  # the trial ``start_from_defaults`` enqueued


def _this_worker() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _process_gone(worker) -> bool:
    """Whether ``worker`` (a :func:`_this_worker` record) ran on this host in a
    process that no longer exists."""
    if not isinstance(worker, dict) or worker.get("host") != socket.gethostname():
        return False
    if worker.get("pid") == os.getpid():
        return True  # this process asks again for its own trial
    try:
        os.kill(int(worker["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError, ValueError, KeyError):
        return False
    return False


def objectives_of(objective) -> list:
    """The ``keras_tuner.Objective`` objects of an oracle's objective: the
    objectives of a ``MultiObjective``, else the one objective."""
    return list(getattr(objective, "objectives", [objective]))


def _directions(objective) -> list[str]:
    return ["maximize" if o.direction == "max" else "minimize" for o in objectives_of(objective)]


class OptunaOracle(PruningOracleMixin, keras_tuner.Oracle):
    """A KerasTuner ``Oracle`` whose trials are an Optuna study's trials.

    Args:
        objective: a metric name, a ``keras_tuner.Objective``, or a list of them
            (several objectives: the study is multi-objective and its Pareto
            front is ``study.best_trials``).
        max_trials: trials of the whole search, over every worker.
        sampler: ``"tpe"``, ``"random"``, ``"cmaes"``, ``"gp"``, ``"nsga2"``,
            ``"qmc"`` or an ``optuna.samplers`` sampler
            (:mod:`~keras_trainkit.tuning.optuna_samplers`). By name, TPE, GP and
            NSGA-II draw a fifth of ``max_trials`` at random before they model
            (Optuna's 10, or NSGA-II's 50, when that is fewer).
        storage: see :mod:`~keras_trainkit.tuning.optuna_storage`; default a SQLite
            file in the project folder.
        pruner: an ``optuna.pruners`` pruner, ``"median"``, ``"asha"``, a
            :class:`~keras_trainkit.tuning.Pruner` or ``None``.
        seed: makes the sampler reproducible (see ``optuna_samplers``).
        study_name: the study's name in the storage; default the project name.
        heartbeat_interval, grace_period: seconds (database and journal storages):
            a trial without a heartbeat for ``grace_period`` (default twice the
            interval; must be longer than it) belongs to a dead worker and is run
            again. ``heartbeat_interval=None`` turns it off.
        max_retry: how many times a dead worker's trial is run again.
        start_from_defaults, hyperparameters, allow_new_entries, tune_new_entries,
        max_retries_per_trial, max_consecutive_failed_trials: as for our other
            oracles and ``keras_tuner.Oracle``.
    """

    def __init__(self, objective=None, max_trials: int = 10, sampler="tpe", storage=None,
                 pruner=None, seed: int | None = None, study_name: str | None = None,
                 heartbeat_interval: int | None = 10, grace_period: int | None = None,
                 max_retry: int | None = 3, start_from_defaults: bool = False,
                 hyperparameters=None, allow_new_entries: bool = True,
                 tune_new_entries: bool = True, max_retries_per_trial: int = 0,
                 max_consecutive_failed_trials: int = 3):
        check_positive("max_trials", max_trials, integer=True)
        optuna_pruner = pruner if isinstance(pruner, optuna.pruners.BasePruner) else None
        super().__init__(
            objective=objective, max_trials=max_trials, seed=seed,
            hyperparameters=hyperparameters, allow_new_entries=allow_new_entries,
            tune_new_entries=tune_new_entries, max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
            pruner=None if optuna_pruner else pruner, start_from_defaults=start_from_defaults)
        self.optuna_pruner = optuna_pruner
        self.multi_objective = len(_directions(self.objective)) > 1
        if self.multi_objective:  # a trial's epoch: the first objective's best
            self.objective = kt_compat.FirstObjectiveEpochs(objectives_of(self.objective))
        if self.multi_objective and pruner is not None:
            raise ValueError("Argument `pruner` must be None with several objectives: Optuna "
                             f"prunes single-objective studies only. Received: pruner={pruner!r}")
        self.sampler = get_sampler(sampler, seed, self.multi_objective, max_trials)
        check_storage(storage)
        self.storage_argument = storage
        if study_name is not None:
            check_type("study_name", study_name, str)
            check_condition("study_name", study_name, study_name != "", "must not be empty")
        self.study_name = study_name
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = check_heartbeat(heartbeat_interval, grace_period, max_retry)
        self.max_retry = max_retry
        self.optuna_trials: dict[str, optuna.Trial] = {}
        self.storage_ids: dict[str, int] = {}  # KerasTuner's trial id -> the storage's
        self.heartbeats: dict[str, Heartbeat] = {}
        self._storage = None
        self._study = None

    # -- the study ---------------------------------------------------------------
    @property
    def storage(self):
        """The Optuna storage of the study (made on first use)."""
        if self._storage is None:
            project_dir = os.path.dirname(kt_compat.oracle_state_path(self))
            self._storage = make_storage(self.storage_argument, project_dir,
                                         self.heartbeat_interval, self.grace_period,
                                         self.max_retry)
        return self._storage

    @property
    def study(self) -> optuna.Study:
        """The Optuna study (created in, or loaded from, the storage on first use)."""
        if self._study is None:
            project_dir = os.path.dirname(kt_compat.oracle_state_path(self))
            name = self.study_name or os.path.basename(project_dir)
            # before a study is made in a storage the search did not run on
            check_study_holds(self.storage, name, self.trials, project_dir, self.storage_argument)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._study = optuna.create_study(
                    storage=self.storage, sampler=self.sampler,
                    pruner=self.optuna_pruner or optuna.pruners.NopPruner(), study_name=name,
                    directions=_directions(self.objective), load_if_exists=True)
                if self._study.metric_names is None:  # the dashboard's axis titles
                    self._study.set_metric_names(
                        [o.name for o in objectives_of(self.objective)])
        return self._study

    # -- handing out trials -----------------------------------------------------
    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        if tuner_id in self.ongoing_trials:
            return self.ongoing_trials[tuner_id]
        self._keep_own_retries()
        if kt_compat.pending_retries(self):  # KerasTuner hands these out first, same ids
            trial = super().create_trial(tuner_id)
            self._reopen(trial.trial_id)
            return trial
        response = self.populate_space(None)
        if response["status"] != RUNNING:
            return kt_compat.start_trial(self, tuner_id, None, self.hyperparameters.copy(),
                                         response["status"])
        optuna_trial = response["optuna_trial"]
        hyperparameters = AskingHyperParameters.from_config(self.hyperparameters.get_config())
        hyperparameters.values = response["values"]
        trial_id = self.trial_id_of(optuna_trial.number)
        self._attach(trial_id, optuna_trial,
                     storage_trial_id(self.study, self.storage, optuna_trial.number))
        if self.tune_new_entries:  # else KerasTuner's: new entries keep their defaults
            hyperparameters.ask = self._asker(trial_id, optuna_trial)
        return kt_compat.start_trial(self, tuner_id, trial_id, hyperparameters, RUNNING)

    def _asker(self, trial_id: str, optuna_trial):
        """How the trial asks for a hyperparameter registered after it started: from the
        study, or at its default in the trial ``start_from_defaults`` enqueued."""
        if not optuna_trial.user_attrs.get(DEFAULTS_ATTR):
            return lambda hp: suggest(optuna_trial, hp)
        storage, storage_id = optuna_trial.storage, self.storage_ids[trial_id]
        return lambda hp: fix_value(storage, storage_id, hp, hp.default)

    def trial_id_of(self, number: int) -> str:
        """KerasTuner's id of a new trial, the Optuna trial ``number`` zero-padded like
        KerasTuner's to the width of ``max_trials``. A search resumed with a larger
        ``max_trials`` pads its new trials wider: look trials up by :meth:`trial_of`."""
        return f"{number:0{len(str(self.max_trials))}d}"

    def trial_of(self, number: int):
        """KerasTuner's trial of the Optuna trial ``number`` (whatever width its id was
        padded to), or ``None``."""
        return next((trial for trial_id, trial in self.trials.items()
                     if trial_id.isdigit() and int(trial_id) == number), None)

    def populate_space(self, trial_id):
        """Ask the study for a trial (``trial_id`` is unused: the trial's number names it)."""
        if self.deadline is not None and time.time() > self.deadline:
            return {"status": STOPPED, "values": None}
        check_shared_names(self.hyperparameters.space)  # before a trial is asked for
        optuna_trial = self._ask()
        if optuna_trial is None or optuna_trial is IDLE:
            return {"status": STOPPED if optuna_trial is None else IDLE, "values": None}
        values = active_values(self.hyperparameters.space,
                               lambda hp: suggest(optuna_trial, hp))
        return {"status": RUNNING, "values": values, "optuna_trial": optuna_trial}

    def _ask(self):
        """A new (or queued) trial of the study, or ``None`` when the search has its
        ``max_trials`` (counted over every worker)."""
        study = self.study
        if has_heartbeat(self.storage):
            fail_dead_workers_trials(study, self.storage)
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        places = _places(trials)
        if not waiting and len(places) >= self.max_trials:
            # With heartbeats, a running trial may still die and be queued again:
            # wait for the running trials before the search ends (no trial lost).
            if has_heartbeat(self.storage) and any(
                    t.state == TrialState.RUNNING for t in places):
                return IDLE
            return None
        if self.start_from_defaults and not trials:
            study.enqueue_trial(optuna_params_of_defaults(self), skip_if_exists=True,
                                user_attrs={DEFAULTS_ATTR: True})
        with warnings.catch_warnings():
            # Optuna warns that heartbeats are meant for Study.optimize: we beat ourselves.
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            optuna_trial = study.ask()
        # The first beat now, not later from the thread: a database storage never fails
        # a trial without one, so a worker killed in between would hang the others.
        self._beat(optuna_trial.number)
        places = _places(study.get_trials(deepcopy=False))
        numbers = [t.number for t in places[:self.max_trials]]
        if optuna_trial.number not in numbers:  # another worker took the last place first
            optuna_trial.set_user_attr(SURPLUS_ATTR, True)
            study.tell(optuna_trial, state=TrialState.FAIL, skip_if_finished=True)
            return None
        optuna_trial.set_user_attr(WORKER_ATTR, _this_worker())
        return optuna_trial

    def _keep_own_retries(self) -> None:
        """Keep in KerasTuner's retry queue only the trials this process may run again:
        those whose Optuna trial still runs, on this host, for a process that is gone
        (a rerun after a kill) or for this one (a trial that raised, with retries left).
        The others are running elsewhere, finished, or were failed by their heartbeat
        and queued again under a new number."""
        queue = kt_compat.pending_retries(self)
        if not queue:
            return
        records = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        for trial_id in list(queue):
            record = records.get(int(trial_id))
            if (record is not None and record.state == TrialState.RUNNING
                    and _process_gone(record.user_attrs.get(WORKER_ATTR))):
                self._beat(record.number)  # claim it before a worker fails it
                continue
            queue.remove(trial_id)
            if record is not None and record.state == TrialState.FAIL:
                trial = self.trials[trial_id]
                trial.status = TrialStatus.FAILED
                trial.message = ("its worker stopped; the Optuna study failed the trial by its "
                                 "heartbeat and runs its values again as a new trial")
                kt_compat.save_trial_record(self, trial)

    def _beat(self, number: int) -> None:
        """Record one heartbeat of the study's trial ``number`` now (with a heartbeat storage)."""
        if has_heartbeat(self.storage):
            self.storage.record_heartbeat(storage_trial_id(self.study, self.storage, number))

    def _reopen(self, trial_id: str) -> None:
        """Claim the running Optuna trial of KerasTuner's trial ``trial_id`` for this
        process and attach it."""
        storage_id = storage_trial_id(self.study, self.storage, int(trial_id))
        optuna_trial = optuna.Trial(self.study, storage_id)
        optuna_trial.set_user_attr(WORKER_ATTR, _this_worker())
        self._attach(trial_id, optuna_trial, storage_id)

    def _attach(self, trial_id: str, optuna_trial, storage_id: int) -> None:
        """Track ``optuna_trial`` (the storage's trial ``storage_id``) as KerasTuner's
        trial ``trial_id``, with a heartbeat where the storage keeps one."""
        self.optuna_trials[trial_id] = optuna_trial
        self.storage_ids[trial_id] = storage_id
        if has_heartbeat(self.storage) and trial_id not in self.heartbeats:
            self.heartbeats[trial_id] = Heartbeat(self.storage, storage_id)

    # -- epochs and pruning -------------------------------------------------------
    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        # KerasTuner's record (or a returned score's), without PruningOracleMixin's rule
        trial = ReturnedScore.update_trial(self, trial_id, metrics, step=step)
        self._forget_outlived_pruning(trial_id, step)
        optuna_trial = self.optuna_trials.get(trial_id)
        name = self.objective.name
        if optuna_trial is None or self.multi_objective or name not in metrics:
            return trial
        value = _mean_at(trial, name, int(step))
        if not np.isfinite(value):
            return trial
        try:  # an earlier execution's value at this step is overwritten (as Trial.report
            # would not): the storage's public call, one writer per trial in any storage
            optuna_trial.storage.set_trial_intermediate_value(
                self.storage_ids[trial_id], int(step), value)
        except optuna.exceptions.UpdateFinishedTrialError:
            return trial  # failed by its heartbeat meanwhile: its copy runs elsewhere
        if self._later_execution(trial, int(step)):
            # Pruned in its first execution only, as by our other oracles: the study's
            # record now mixes the means so far with the first execution's later
            # epochs (Optuna's pruners judge its last step, which this execution has
            # not reached), a curve no execution produced.
            return trial
        reason = self._prune_reason(trial, optuna_trial, int(step))
        if reason:
            rule = (type(self.optuna_pruner).__name__ if self.optuna_pruner is not None
                    else self.pruner.name)
            self._prune(trial, step, rule, reason)
        return trial

    def _prune_reason(self, trial, optuna_trial, step: int) -> str | None:
        if self.optuna_pruner is not None:  # Trial.should_prune, with the stored values
            frozen = optuna_trial.storage.get_trial(self.storage_ids[trial.trial_id])
            if self.study.pruner.prune(self.study, frozen):
                return f"Optuna's {type(self.optuna_pruner).__name__} said to prune"
            return None
        if not isinstance(self.pruner, Pruner):
            return None
        value = self._best_by_step(trial, step)
        if value is None:
            return None
        sign = 1.0 if self.objective.direction == "max" else -1.0
        others = []
        for record in self.study.get_trials(deepcopy=False, states=(
                TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
            reached = [sign * v for s, v in record.intermediate_values.items()
                       if s <= step and np.isfinite(v)]
            if (record.number != optuna_trial.number and reached
                    and max(record.intermediate_values) >= step):
                others.append(max(reached))
        return self.pruner.decide(step, value, others)

    # -- ending trials --------------------------------------------------------------
    @keras_tuner.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)
        if trial.trial_id in kt_compat.pending_retries(self):
            return  # KerasTuner runs it again: the Optuna trial goes on
        # A finished trial asks the study no more: a hyperparameter first registered after
        # it (building its model again in this process, where an isolated trial's process
        # gave the ones it registered their defaults) takes its default, as it did there;
        # asking raised UpdateFinishedTrialError in get_best_models.
        for record in (trial, self.trials.get(trial.trial_id)):
            if isinstance(getattr(record, "hyperparameters", None), AskingHyperParameters):
                record.hyperparameters.ask = None
        heartbeat = self.heartbeats.pop(trial.trial_id, None)
        if heartbeat is not None:
            heartbeat.stop()
        optuna_trial = self.optuna_trials.pop(trial.trial_id, None)
        self.storage_ids.pop(trial.trial_id, None)
        if optuna_trial is None:
            return
        record = self.trials[trial.trial_id]
        if record.status != TrialStatus.COMPLETED:
            self.study.tell(optuna_trial, state=TrialState.FAIL, skip_if_finished=True)
        elif trial.trial_id in self.pruned_trials:
            self.study.tell(optuna_trial, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            self.study.tell(optuna_trial, self.objective_values(record), skip_if_finished=True)

    def objective_values(self, trial) -> list[float]:
        """The trial's value of each objective: what its ``fit`` returned, else its
        value at the best step (one objective: the score, the returned value if any)."""
        objectives = objectives_of(self.objective)
        if len(objectives) == 1:
            return [float(trial.score)]
        returned = returned_metrics(trial)
        values = []
        for objective in objectives:
            history = trial.metrics.get_history(objective.name)
            at_best = [o.value for o in history if o.step == trial.best_step] or [history[-1].value]
            values.append(returned.get(objective.name, float(np.mean(at_best[0]))))
        return values

    # -- every worker's trials ------------------------------------------------------
    def set_state(self, state):
        """As KerasTuner's, once the records of the trials ``oracle.json`` names are
        read: KerasTuner's ``reload`` reads the trial files, then ``oracle.json``, and
        another worker of the search may start a trial in between (it writes the
        trial's record, then ``oracle.json``). ``start_order`` names every trial
        started, the ongoing ones included (``kt_compat.start_trial``)."""
        for trial_id in state["start_order"]:
            if trial_id not in self.trials:
                self.trials[trial_id] = Trial.load(kt_compat.oracle_trial_path(self, trial_id))
        super().set_state(state)

    def refresh_trials(self) -> None:
        """Read the trials other processes of the search recorded (``trial_<id>/trial.json``),
        so the best trials, the report and the ensemble cover every worker."""
        ongoing = {t.trial_id for t in self.ongoing_trials.values()}
        for path in kt_compat.trial_record_paths(self):  # not a glob: "runs[1]" is a folder name
            trial_id = os.path.basename(os.path.dirname(path))[len("trial_"):]
            known = self.trials.get(trial_id)
            if trial_id in ongoing or (known is not None and known.status != RUNNING):
                continue
            try:
                self.trials[trial_id] = Trial.load(path)
            except (OSError, ValueError, KeyError):
                continue  # being written, or damaged: the reload of the search reports it
        self.trials = dict(sorted(self.trials.items(), key=lambda item: (len(item[0]), item[0])))

    def get_best_trials(self, num_trials=1):
        """The best trials, every worker's. With several objectives, ranked by
        non-dominated sorting (the Pareto front first, by the first objective;
        :mod:`~keras_trainkit.tuning.pareto`) instead of KerasTuner's signed sum
        of the objectives, which the largest-valued objective decides."""
        self.refresh_trials()
        if not self.multi_objective:
            return super().get_best_trials(num_trials)
        trials = list(self.trials.values())
        completed = [t for t in trials if t.status == TrialStatus.COMPLETED]
        ranked = rank_trials(completed, self.objective_values, self.objective.objectives)
        if len(ranked) < num_trials:  # as KerasTuner: then the unfinished ones
            ranked += [t for t in trials if t.status != TrialStatus.COMPLETED]
        return ranked[:num_trials]

    def pareto_front(self) -> list:
        """The KerasTuner trials of the study's Pareto front (``study.best_trials``),
        best first by the first objective."""
        self.refresh_trials()
        front = [self.trial_of(t.number) for t in self.study.best_trials]
        front = [t for t in front if t is not None]
        first = objectives_of(self.objective)[0]
        return sorted(front, key=lambda t: self.objective_values(t)[0],
                      reverse=first.direction == "max")


def _places(trials) -> list:
    """The trials that hold one of the search's ``max_trials`` places, in order. A trial
    run again after its worker died holds its original's place (the original none); a
    surplus trial (asked after the last place was taken) holds none."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    holders = [t for t in trials if t.number not in retried and t.state in _COUNTED
               and not t.user_attrs.get(SURPLUS_ATTR)]
    return sorted(holders, key=lambda t: (t.system_attrs.get("failed_trial", t.number), t.number))


def _mean_at(trial, name: str, step: int) -> float:
    """The mean of the objective ``name`` at ``step`` over the trial's executions so far
    (KerasTuner's record: one value per execution)."""
    values = [np.mean(o.value) for o in trial.metrics.get_history(name) if o.step == step]
    return float(np.mean(values)) if values else float("nan")


def optuna_params_of_defaults(oracle) -> dict:
    """The Optuna parameters of every active hyperparameter at its default."""
    space = oracle.hyperparameters.space
    return optuna_params(space, active_values(space, lambda hp: hp.default))


__all__ = ["DEFAULTS_ATTR", "OptunaOracle", "SURPLUS_ATTR", "WORKER_ATTR", "objectives_of",
           "optuna_params_of_defaults"]
