"""``OptunaSearch``: a KerasTuner tuner whose trials come from an Optuna study.

The search space is written the KerasTuner way (a ``HyperModel``, our recipe
spaces); Optuna's samplers choose the values, its storage holds the study
(so many processes on many hosts can run one search, and a rerun resumes it),
its pruners or ours stop bad trials, and every Optuna tool works on
``tuner.study`` (visualization, importance, ``optuna-dashboard``). The tuner
has every feature of :class:`~keras_trainkit.tuning.TrainkitTunerMixin`
(resume, isolation, time budget, report).
"""

from __future__ import annotations

import keras_tuner

from keras_trainkit.tuning.optuna_oracle import OptunaOracle, objectives_of
from keras_trainkit.tuning.optuna_required import optuna
from keras_trainkit.tuning.optuna_storage import storage_url
from keras_trainkit.tuning.tuners import TrainkitTunerMixin

#: A metric every epoch's logs get when an objective names it: the model's parameter count.
PARAMS_METRIC = "num_params"


class OptunaSearch(TrainkitTunerMixin, keras_tuner.Tuner):
    """A KerasTuner tuner asking an Optuna study for each trial's hyperparameters.

    Every KerasTuner hyperparameter type maps to an Optuna distribution
    (:mod:`~keras_trainkit.tuning.optuna_space`); conditional hyperparameters
    are asked only when active. Workers started with the same command on one
    storage run one search: one sequence of trials, none repeated, a dead
    worker's trial run again (see :class:`~keras_trainkit.tuning.optuna_oracle.OptunaOracle`).

    Args:
        hypermodel: a ``HyperModel`` (e.g. ``RecipeHyperModel``) or build function.
        sampler: ``"tpe"`` (default), ``"random"``, ``"cmaes"``, ``"gp"``,
            ``"nsga2"``, ``"qmc"`` or an ``optuna.samplers`` sampler. By name,
            TPE, GP and NSGA-II model after a fifth of ``max_trials`` (see
            :func:`~keras_trainkit.tuning.optuna_samplers.startup_trials`).
        storage: ``None`` (a SQLite file ``optuna.db`` in the project folder),
            ``"journal"``, ``"journal:<path>"``, a database URL or an Optuna storage.
        pruner: an ``optuna.pruners`` pruner (``MedianPruner``, ``PatientPruner``,
            ``WilcoxonPruner``, ...), ``"median"``, ``"asha"``, a
            :class:`~keras_trainkit.tuning.Pruner` or ``None``.
        objective: a metric name, a ``keras_tuner.Objective`` or a list of
            objectives with directions (a multi-objective search: see
            :meth:`pareto_front`). ``"num_params"`` is the model's parameter count.
            Default: a ``RecipeHyperModel``'s own, else ``"val_accuracy"``.
        max_trials: trials of the whole search, over every worker.
        seed: makes a search reproducible (same seed, same values).
        study_name, heartbeat_interval, grace_period, max_retry,
        start_from_defaults: see :class:`~keras_trainkit.tuning.optuna_oracle.OptunaOracle`.
        isolate_trials, time_budget, progress: see
            :class:`~keras_trainkit.tuning.TrainkitTunerMixin`.
        **kwargs: ``directory``, ``project_name``, ``overwrite``,
            ``executions_per_trial``, ... as for ``keras_tuner.Tuner``.

    Example:
        >>> tuner = OptunaSearch(RecipeHyperModel((40,), 10), sampler="tpe",
        ...                      max_trials=30, pruner="median", seed=1,
        ...                      directory="runs", project_name="tpe")  # doctest: +SKIP
        >>> tuner.search(x, y, validation_data=(x_val, y_val))  # doctest: +SKIP
        >>> tuner.study.best_trial.params  # doctest: +SKIP
    """

    oracle_class = OptunaOracle
    default_objective = "val_accuracy"

    @property
    def study(self) -> optuna.Study:
        """The search's ``optuna.Study``."""
        return self.oracle.study

    @property
    def storage_url(self) -> str | None:
        """The storage's URL (for ``optuna-dashboard <url>``), ``None`` for a journal."""
        return storage_url(self.oracle.storage)

    def pareto_front(self) -> list:
        """The KerasTuner trials on the Pareto front of a multi-objective search
        (every worker's), best first by the first objective. Load their models
        with :meth:`load_model`, or all of them with :meth:`pareto_models`."""
        return self.oracle.pareto_front()

    def pareto_models(self) -> list:
        """The models of :meth:`pareto_front`, with their best epoch's weights."""
        return [self.load_model(trial) for trial in self.pareto_front()]

    def on_epoch_end(self, trial, model, epoch, logs=None):
        names = {o.name for o in objectives_of(self.oracle.objective)}
        if logs is not None and PARAMS_METRIC in names:
            logs[PARAMS_METRIC] = float(model.count_params())
        super().on_epoch_end(trial, model, epoch, logs)


__all__ = ["OptunaSearch", "PARAMS_METRIC"]
