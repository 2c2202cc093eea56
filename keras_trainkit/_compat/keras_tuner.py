"""KerasTuner internals the tuning package needs, one function or hook per need.

Tested with keras-tuner 1.4.8 (``keras_tuner/src/...``); the upstream file is
named in each docstring. Everything else in ``keras_trainkit.tuning`` uses
KerasTuner's public API (``keras_tuner.Tuner``, ``keras_tuner.Oracle``,
``keras_tuner.errors``, ``keras_tuner.engine.trial``, ...).
"""

from __future__ import annotations

import functools
import json
import os

from keras_tuner.src.engine import objective as objective_module
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.engine import tuner_utils
from keras_tuner.src.tuners.gridsearch import GridSearchOracle, LinkedList

from keras_trainkit.utils.files import write_json_atomically


class ExecutionHook:
    """Routes each execution of a trial through ``self.fit_execution(trial, args, kwargs)``.

    KerasTuner's ``Tuner.run_trial`` (``keras_tuner/src/engine/tuner.py``,
    1.4.8) runs ``executions_per_trial`` executions, each by calling
    ``Tuner._build_and_fit_model(trial, *args, **kwargs)`` with that
    execution's fresh callbacks. The method is private but documented there as
    the override point ("For AutoKeras to override. DO NOT REMOVE"); it is the
    only place that sees one execution's ``fit`` arguments, so resume, isolation
    and per-epoch reporting hook in here. A class using this hook must define
    ``fit_execution`` and call :func:`build_and_fit` to run KerasTuner's own
    build (``max_model_size``, compile overrides, distribution scope) and fit.
    """

    def _build_and_fit_model(self, trial, *args, **kwargs):
        return self.fit_execution(trial, args, kwargs)


class FirstObjectiveEpochs(objective_module.MultiObjective):
    """Several objectives whose trials keep the epoch best in the first one.

    KerasTuner's ``MultiObjective`` (``keras_tuner/src/engine/objective.py``,
    1.4.8; a list of objectives becomes one in ``Oracle.__init__``) values an
    epoch by the signed sum of its objectives, and that value picks a trial's
    best epoch: its ``best_step``, the weights ``SaveBestEpoch`` keeps, and so
    the values of every objective read at that step. With an objective that
    changes from epoch to epoch and has larger values (a measured latency in
    milliseconds beside an accuracy), its noise decides the epoch. Here an
    epoch's value is the first objective's, negated when it is maximized (the
    class's direction stays ``"min"``); everything else is KerasTuner's, so
    ``isinstance(objective, MultiObjective)`` checks still hold.
    """

    def get_value(self, logs):
        first = self.objectives[0]
        value = float(logs[first.name])
        return -value if first.direction == "max" else value


def build_and_fit(tuner, trial, args, kwargs):
    """KerasTuner's own build-and-fit of one execution, skipping :class:`ExecutionHook`.

    ``Tuner._build_and_fit_model`` (``keras_tuner/src/engine/tuner.py``, 1.4.8,
    or a subclass's override of it): builds the model with the tuner's checks
    (``max_model_size``, ``optimizer``/``loss``/``metrics`` overrides, the
    distribution strategy's scope), fits it through the hypermodel, saves the
    build config next to the trial's checkpoint and validates what
    ``HyperModel.fit`` returned.
    """
    return super(ExecutionHook, tuner)._build_and_fit_model(trial, *args, **kwargs)


def build_model(tuner, hyperparameters):
    """A model built with the tuner's checks and compile overrides, not trained.

    ``Tuner._try_build`` (``keras_tuner/src/engine/tuner.py``, 1.4.8).
    """
    return tuner._try_build(hyperparameters)


#: The name of a trial's best-epoch weights file, as ``Tuner._get_checkpoint_fname``
#: (``keras_tuner/src/engine/tuner.py``, 1.4.8) names it under Keras 3.
BEST_WEIGHTS_FILE = "checkpoint.weights.h5"


def best_weights_path(tuner, trial_id) -> str:
    """Where the tuner keeps a trial's best-epoch weights (``checkpoint.weights.h5``).

    ``Tuner._get_checkpoint_fname`` (``keras_tuner/src/engine/tuner.py``, 1.4.8).
    """
    return tuner._get_checkpoint_fname(trial_id)


def build_config_path(tuner, trial_id) -> str:
    """Where the tuner keeps a trial's model build config (``build_config.json``).

    ``Tuner._get_build_config_fname`` (``keras_tuner/src/engine/tuner.py``, 1.4.8).
    """
    return tuner._get_build_config_fname(trial_id)


def tuner_state_path(tuner) -> str:
    """The tuner's own state file (``<project>/<tuner_id>.json``).

    ``BaseTuner._get_tuner_fname`` (``keras_tuner/src/engine/base_tuner.py``, 1.4.8).
    """
    return tuner._get_tuner_fname()


def is_best_epoch_saver(callback) -> bool:
    """Whether ``callback`` is the ``SaveBestEpoch`` that ``Tuner.run_trial`` adds.

    ``tuner_utils.SaveBestEpoch`` (``keras_tuner/src/engine/tuner_utils.py``,
    1.4.8); its ``filepath`` and ``best_value`` attributes are read and set by
    the tuning package, which saves the best epoch atomically in its place.
    """
    return isinstance(callback, tuner_utils.SaveBestEpoch)


def is_tuner_hooks_callback(callback) -> bool:
    """Whether ``callback`` is the ``TunerCallback`` that forwards epochs to the tuner's hooks.

    ``tuner_utils.TunerCallback`` (``keras_tuner/src/engine/tuner_utils.py``,
    1.4.8), which calls ``tuner.on_epoch_end(trial, model, epoch, logs)`` and
    the other per-batch/epoch hooks; its ``tuner`` attribute is public.
    """
    return isinstance(callback, tuner_utils.TunerCallback)


def check_trial_results(results, objective, source: str) -> None:
    """Raise KerasTuner's ``FatalTypeError``/``FatalValueError`` for results it refuses.

    ``tuner_utils.validate_trial_results`` (``keras_tuner/src/engine/tuner_utils.py``,
    1.4.8): ``None``, a string, a dict without the objective, or anything but a
    float when the objective is left unspecified.
    """
    tuner_utils.validate_trial_results(results, objective, source)


def metrics_from_results(results, objective) -> dict:
    """The metrics dict KerasTuner reports for a trial's results (a History's best epoch,
    a dict, a float, or the average over a list of them).

    ``tuner_utils.convert_to_metrics_dict`` (``keras_tuner/src/engine/tuner_utils.py``, 1.4.8).
    """
    return tuner_utils.convert_to_metrics_dict(results, objective)


def best_step_of_results(results, objective) -> int:
    """The step KerasTuner reports with a trial's results (a History's best epoch, else 0).

    ``tuner_utils.get_best_step`` (``keras_tuner/src/engine/tuner_utils.py``, 1.4.8).
    """
    return tuner_utils.get_best_step(results, objective)


def set_random_stream_position(oracle, position: int) -> None:
    """Set the seed of the oracle's next random draw.

    ``Oracle._seed_state`` (``keras_tuner/src/engine/oracle.py``, 1.4.8): the
    ``n``-th draw is seeded with ``_seed_state + n``; saved in ``oracle.json``.
    """
    oracle._seed_state = position


def random_stream_position(oracle) -> int:
    """The seed of the oracle's next random draw (see :func:`set_random_stream_position`)."""
    return oracle._seed_state


def reseed_bayesian_oracle(oracle, seed: int) -> None:
    """Give a ``BayesianOptimizationOracle`` a new random state and Gaussian process for ``seed``.

    ``BayesianOptimizationOracle._random_state`` and ``_make_gpr``
    (``keras_tuner/src/tuners/bayesian.py``, 1.4.8). Does nothing for other oracles.
    """
    if hasattr(oracle, "_random_state"):
        import numpy as np

        oracle._random_state = np.random.RandomState(seed)
        oracle.gpr = oracle._make_gpr()


def oracle_state_path(oracle) -> str:
    """The oracle's state file (``<project>/oracle.json``).

    ``Oracle._get_oracle_fname`` (``keras_tuner/src/engine/oracle.py``, 1.4.8).
    """
    return oracle._get_oracle_fname()


def oracle_trial_path(oracle, trial_id) -> str:
    """A trial's record as the oracle writes it (``<project>/trial_<id>/trial.json``).

    ``Oracle._get_trial_dir`` (``keras_tuner/src/engine/oracle.py``, 1.4.8).
    """
    return os.path.join(oracle._get_trial_dir(trial_id), "trial.json")


class AtomicTrialRecords:
    """Makes an oracle write ``trial.json`` whole or not at all.

    KerasTuner's ``Oracle._save_trial`` (``keras_tuner/src/engine/oracle.py``,
    1.4.8) writes the file in place, so a kill or a full disk during the write
    leaves a truncated record that stops the search from resuming. The oracle
    calls this private method itself after every ``create_trial``,
    ``update_trial`` and ``end_trial``, so it is overridden here.
    """

    def _save_trial(self, trial):
        write_json_atomically(oracle_trial_path(self, trial.trial_id), trial.get_state())


def write_records_atomically(oracle) -> None:
    """Make any KerasTuner oracle write ``oracle.json`` and ``trial.json`` whole or not at all.

    ``Oracle.save`` (through ``Stateful.save``) and ``Oracle._save_trial``
    (``keras_tuner/src/engine/oracle.py`` and ``stateful.py``, 1.4.8) write in
    place: a kill during a write leaves a truncated file (a truncated
    ``oracle.json`` stops the search from resuming), and a process reading the
    file meanwhile finds it empty. Our oracles write atomically already
    (:class:`AtomicTrialRecords`); another tuner's oracle (``trainkit_tuner``)
    gets the two methods replaced on the instance (the oracle calls both itself).
    """
    if isinstance(oracle, AtomicTrialRecords):
        return
    oracle._save_trial = functools.partial(AtomicTrialRecords._save_trial, oracle)
    oracle.save = functools.partial(save_oracle_state, oracle)


def save_oracle_state(oracle) -> None:
    """Write the oracle's state (``oracle.json``) atomically, as ``Oracle.save``
    writes it in place (``keras_tuner/src/engine/oracle.py``, 1.4.8)."""
    write_json_atomically(oracle_state_path(oracle), oracle.get_state())


def pending_retries(oracle) -> list:
    """The ids of the trials the oracle will run again before any new one (a list to edit).

    ``Oracle._retry_queue`` (``keras_tuner/src/engine/oracle.py``, 1.4.8):
    ``Oracle.reload`` puts the trials that were running when the search
    stopped there, and ``end_trial`` a trial that raised (``INVALID``) while it
    has retries left; ``create_trial`` hands them out first, keeping their ids.
    """
    return oracle._retry_queue


def start_trial(oracle, tuner_id, trial_id, hyperparameters, status):
    """Record a new trial with the given id as ``Oracle.create_trial`` records its own.

    The second half of ``Oracle.create_trial`` (``keras_tuner/src/engine/oracle.py``,
    1.4.8), for an oracle that numbers its trials itself (an Optuna study's trial
    numbers, unique over every process of a search): a ``RUNNING`` trial's
    values are recorded, it becomes the tuner's ongoing trial, is saved and
    displayed; a ``STOPPED`` answer releases the tuner.
    """
    oracle.tuner_ids.add(tuner_id)
    trial = trial_module.Trial(hyperparameters=hyperparameters, trial_id=trial_id,
                               status=status)
    if status == trial_module.TrialStatus.RUNNING:
        oracle._record_values(trial)
        oracle.ongoing_trials[tuner_id] = trial
        oracle.trials[trial_id] = trial
        oracle.start_order.append(trial_id)
        oracle._save_trial(trial)
        oracle.save()
        oracle._display.on_trial_begin(trial)
    elif status == trial_module.TrialStatus.STOPPED:
        oracle.tuner_ids.discard(tuner_id)
    return trial


def save_trial_record(oracle, trial) -> None:
    """Write the trial's ``trial.json`` as the oracle does after each change.

    ``Oracle._save_trial`` (``keras_tuner/src/engine/oracle.py``, 1.4.8), or
    :class:`AtomicTrialRecords`'s atomic version of it.
    """
    oracle._save_trial(trial)


def trial_record_paths(oracle) -> list[str]:
    """Every ``<project>/trial_<id>/trial.json`` there is, sorted, found by listing the
    folder (a glob of the project's path would read ``[``, ``*`` or ``?`` in it as a
    pattern; see :func:`reload_oracle`)."""
    project_dir = os.path.dirname(oracle_state_path(oracle))
    paths = (os.path.join(project_dir, name, "trial.json") for name in sorted(os.listdir(project_dir))
             if name.startswith("trial_"))
    return [path for path in paths if os.path.isfile(path)]


def reload_oracle(oracle) -> None:
    """Reload a KerasTuner ``oracle`` from its project folder, as ``Oracle.reload``
    does, but find the trials by listing the folder.

    KerasTuner's ``Oracle.reload`` (``keras_tuner/src/engine/oracle.py``, 1.4.8)
    finds every ``trial_<id>/trial.json`` with a glob pattern made of the
    project's path, so a ``directory`` or ``project_name`` holding ``[``, ``*``
    or ``?`` (``runs[1]``) matched no trial (the resumed search lost them all and
    ran trial ``0`` again over the first one's folder), or another folder's
    (``runs1``). The trials are read first, then ``oracle.json``, and the
    trials that were running are queued to run again, as there.
    """
    state_path = oracle_state_path(oracle)
    project_dir = os.path.dirname(state_path)
    for path in trial_record_paths(oracle):
        trial = trial_module.Trial.load(path)
        oracle.trials[trial.trial_id] = trial
    with open(state_path, "rb") as handle:
        state = json.loads(handle.read())
    try:
        oracle.set_state(state)
    except KeyError as error:  # the message of KerasTuner's Oracle.reload
        raise RuntimeError(
            "Error reloading `Oracle` from existing project. If you did not mean to reload "
            "from an existing project, change the `project_name` or pass `overwrite=True` "
            f"when creating the `Tuner`. Found existing project at: {project_dir}") from error
    # As there: the trials running when the search stopped are run again first.
    retries = pending_retries(oracle)
    for trial in oracle.ongoing_trials.values():
        retries.append(trial.trial_id)
    oracle.ongoing_trials = {}
    if isinstance(oracle, GridSearchOracle):
        restore_grid_order(oracle)


def restore_grid_order(oracle) -> None:
    """Rebuild a reloaded ``GridSearchOracle``'s place in its grid from its trials.

    ``GridSearchOracle`` (``keras_tuner/src/tuners/gridsearch.py``, 1.4.8) keeps
    its trials ordered by their values (``_ordered_ids``, a ``LinkedList``) and
    the trials whose next combination is still to be made (``_populate_next``),
    and saves neither: a reloaded search failed at its next trial with a
    ``KeyError``, or ended with the rest of the grid untried. Every trial goes
    into both, in the order of the oracle's ``_compare`` and in creation order;
    a trial whose next combination was tried is skipped there, as in a search
    that ran through.
    """
    def compare(first, second):
        return oracle._compare(oracle.trials[first].hyperparameters.values,
                               oracle.trials[second].hyperparameters.values)

    created = sorted(oracle.trials, key=lambda trial_id: (len(trial_id), trial_id))
    oracle._ordered_ids = LinkedList()
    for trial_id in sorted(created, key=functools.cmp_to_key(compare)):
        oracle._ordered_ids.insert(trial_id)
    oracle._populate_next = list(created)


def reload_by_listing(oracle) -> None:
    """Make ``oracle.reload()`` (which ``BaseTuner.reload`` calls) :func:`reload_oracle`,
    for a KerasTuner oracle of another class than ours (whose ``reload`` uses it already)."""
    oracle.reload = functools.partial(reload_oracle, oracle)


__all__ = [
    "AtomicTrialRecords",
    "BEST_WEIGHTS_FILE",
    "ExecutionHook",
    "FirstObjectiveEpochs",
    "best_step_of_results",
    "best_weights_path",
    "build_and_fit",
    "build_config_path",
    "build_model",
    "check_trial_results",
    "is_best_epoch_saver",
    "is_tuner_hooks_callback",
    "metrics_from_results",
    "oracle_state_path",
    "pending_retries",
    "oracle_trial_path",
    "random_stream_position",
    "reseed_bayesian_oracle",
    "restore_grid_order",
    "save_oracle_state",
    "save_trial_record",
    "set_random_stream_position",
    "reload_by_listing",
    "reload_oracle",
    "start_trial",
    "trial_record_paths",
    "tuner_state_path",
    "write_records_atomically",
]
