"""The report of a finished (or running) search: table, JSON, plots, HParams logs.

``write_report(tuner, output_dir)`` reads the tuner's oracle (so it works on a
search reloaded from disk) and writes:

* ``summary.txt``: the best trials, ranked, with status (pruned trials marked,
  with the epoch they were stopped after), epochs trained, score and
  hyperparameters;
* with several objectives (a multi-objective
  :class:`~keras_trainkit.tuning.OptunaSearch`), trials are ranked by the
  oracle (Pareto front first, :mod:`~keras_trainkit.tuning.pareto`), the table
  shows every objective, and the plots and "score" are the first objective's,
  not KerasTuner's signed sum of them;
* ``best_hyperparameters.json``;
* ``score_by_trial.png``, ``score_vs_<hyperparameter>.png`` (one per tuned
  hyperparameter; on a log axis for those sampled on a log scale) and
  ``learning_curves.png`` (every trial's objective per epoch);
* ``pareto_front.json`` and ``pareto_front.png`` for a multi-objective
  :class:`~keras_trainkit.tuning.OptunaSearch` (the front's trials and their
  objectives; the first two objectives drawn, the front joined);
* ``hparams/``: TensorBoard HParams logs (an experiment config and one run per
  trial with its hyperparameters and objective), readable by TensorBoard's
  HParams dashboard; a report written again (a resumed search) replaces them.

Epochs are counted from 1 everywhere in the report: "epoch 3" is the third
epoch trained, as in Keras's progress lines (KerasTuner records them from 0).
A Hyperband trial shows the epochs it trained itself (Hyperband continues a
trial from an earlier one's weights at ``tuner/initial_epoch``), and its
``epochs`` hyperparameter is the epoch Hyperband trained it to
(``tuner/epochs``), the value its ``fit`` used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import keras_tuner
import numpy as np

from keras_trainkit.tuning.pareto import rank_trials
from keras_trainkit.tuning.trial_models import check_search
from keras_trainkit.tuning.tuners import TrainkitTunerMixin
from keras_trainkit.utils.validation import check_positive

FINISHED = ("COMPLETED", "FAILED", "INVALID")


@dataclass
class TrialRecord:
    """One trial as the report sees it.

    Attributes:
        epochs: the epochs this trial trained (a Hyperband trial that continues
            another counts its own only).
        pruned_after: the epoch (1-based) after which a pruner stopped the trial,
            or ``None``.
        hyperparameters: the values the trial trained with (a Hyperband trial's
            ``epochs`` is ``tuner/epochs``).
        curve: ``(epoch, objective)`` pairs, epochs 1-based.
        objectives: with several objectives, each one's value (``score`` is the
            first one's); else empty.
        epochs_exact: whether ``epochs`` is the count trained, or (``False``) only
            the last epoch the trial reported: KerasTuner's own tuners report a
            trial once, at its best epoch, so the epochs after it are not known.
        epochs_all_executions: the epochs trained over all the trial's executions
            (``executions_per_trial > 1``); ``None`` means ``epochs`` (one execution).
    """

    trial_id: str
    status: str
    score: float | None
    epochs: int
    pruned: bool
    hyperparameters: dict
    curve: list[tuple[int, float]] = field(default_factory=list)
    message: str | None = None
    pruned_after: int | None = None
    objectives: dict = field(default_factory=dict)
    epochs_exact: bool = True
    epochs_all_executions: int | None = None


HYPERBAND_EPOCHS = "tuner/epochs"
HYPERBAND_INITIAL_EPOCH = "tuner/initial_epoch"


def _trained_with(values: dict) -> dict:
    """The hyperparameters a trial trained with: Hyperband's epochs replace the tuned ones."""
    values = dict(values)
    if HYPERBAND_EPOCHS in values and "epochs" in values:
        values["epochs"] = values[HYPERBAND_EPOCHS]
    return values


def _curve_and_epochs(trial, name, every_epoch: bool = False, best_only: bool = False,
                      executions: int = 1) -> tuple[list[tuple[int, float]], int, bool, int]:
    """The trial's ``(epoch, objective)`` pairs (epochs from 1), the epochs it trained,
    whether that count is exact, and the epochs trained over all its executions.

    Our tuners (``every_epoch``) report every epoch at ``step=epoch``, Keras's
    0-based epoch, which a ``fit`` from ``initial_epoch`` counts from there. A
    Hyperband trial (``tuner/epochs`` among its hyperparameters) trains epochs
    ``tuner/initial_epoch .. tuner/epochs - 1``, and KerasTuner's own tuners report
    it once, at the index of its best epoch within that ``fit``
    (``tuner_utils.get_best_step``), so that step counts from ``tuner/initial_epoch``.
    With ``executions_per_trial > 1`` an epoch's value is the mean over the
    executions, as the oracle scores it, and each execution that reached an epoch
    added one value there (a pruned trial ran its first execution only), so the
    values count the epochs of every execution; a tuner that reports a trial once
    (KerasTuner's own) ran all ``executions``. A tuner of another ``run_trial`` is
    taken to report every epoch it trained (exact where they run on without a gap).
    KerasTuner's own ``run_trial`` (``best_only``) reports each execution once, at
    its best epoch: the trial trained at least through it, and that is all that is
    known.
    """
    values = trial.hyperparameters.values
    history = trial.metrics.get_history(name) if trial.metrics.exists(name) else []
    if HYPERBAND_EPOCHS in values and not every_epoch:
        start = int(values.get(HYPERBAND_INITIAL_EPOCH, 0))
        by_epoch = {start + int(obs.step) + 1: float(np.mean(obs.value)) for obs in history}
        epochs = int(values[HYPERBAND_EPOCHS]) - start
        return sorted(by_epoch.items()), epochs, True, epochs * executions
    by_epoch = {int(obs.step) + 1: float(np.mean(obs.value)) for obs in history}
    curve = sorted(by_epoch.items())
    if best_only:  # trained at least through the epoch it reported
        epochs = max(by_epoch, default=0)
        return curve, epochs, False, epochs * executions
    total = sum(len(np.atleast_1d(obs.value)) for obs in history)
    epochs = sorted(by_epoch)
    gapless = not epochs or epochs == list(range(epochs[0], epochs[0] + len(epochs)))
    return curve, len(by_epoch), every_epoch or gapless, total


def several_objectives(oracle) -> list:
    """The oracle's objectives when it ranks trials of several itself (a
    multi-objective :class:`~keras_trainkit.tuning.OptunaSearch`), else ``[]``."""
    objectives = list(getattr(oracle.objective, "objectives", []))
    return objectives if len(objectives) > 1 and hasattr(oracle, "objective_values") else []


def objective_name(oracle) -> str:
    """The objective the report scores and plots: the first of several."""
    return (several_objectives(oracle) or [oracle.objective])[0].name


def _reports_best_epoch_only(tuner) -> bool:
    """Whether the tuner's trials report each execution once, at its best epoch, as
    KerasTuner's own ``Tuner.run_trial`` does (our tuners report every epoch)."""
    return (not isinstance(tuner, TrainkitTunerMixin)
            and getattr(type(tuner), "run_trial", None) is keras_tuner.Tuner.run_trial)


def _single_point_note(tuner, records) -> str | None:
    """What the learning curves' title says when KerasTuner's own tuner reported each
    trial once, at its best epoch (its curves are single points), else ``None``."""
    if isinstance(tuner, TrainkitTunerMixin):  # every epoch reported
        return None
    if any(HYPERBAND_EPOCHS in r.hyperparameters for r in records):
        return "KerasTuner's Hyperband reports each trial's best epoch only"
    if _reports_best_epoch_only(tuner):
        return "KerasTuner's tuner reports each trial's best epoch only"
    return None


def trial_records(tuner) -> list[TrialRecord]:
    """Every trial of ``tuner``'s oracle, best first (finished trials without a
    score last; with several objectives, ranked as the oracle ranks them:
    :func:`~keras_trainkit.tuning.pareto.rank_trials`)."""
    check_search(tuner)
    oracle = tuner.oracle
    if hasattr(oracle, "refresh_trials"):  # a search of several processes: every worker's
        oracle.refresh_trials()
    objectives = several_objectives(oracle)
    name = objective_name(oracle)
    pruned = getattr(oracle, "pruned_trials", {})
    every_epoch = isinstance(tuner, TrainkitTunerMixin)  # reports at Keras's own epoch index
    best_only = _reports_best_epoch_only(tuner)
    executions = int(getattr(tuner, "executions_per_trial", 1) or 1)
    records = []
    for trial in oracle.trials.values():
        curve, epochs, exact, total = _curve_and_epochs(trial, name, every_epoch, best_only,
                                                        executions)
        score = trial.score if trial.score is not None and np.isfinite(trial.score) else None
        values = {}
        if objectives and trial.status == "COMPLETED":
            values = dict(zip([o.name for o in objectives], oracle.objective_values(trial)))
            score = values[name]
        elif objectives:
            score = None
        stopped = pruned.get(trial.trial_id)
        records.append(TrialRecord(
            trial_id=trial.trial_id, status=trial.status, score=score, epochs=epochs,
            pruned=stopped is not None, hyperparameters=_trained_with(trial.hyperparameters.values),
            curve=curve, message=trial.message, objectives=values, epochs_exact=exact,
            epochs_all_executions=total,
            pruned_after=int(stopped["epoch"]) + 1 if stopped is not None else None))
    if objectives:  # the oracle's ranking (get_best_trials), of the values read above
        names = [o.name for o in objectives]
        ranked = rank_trials([r for r in records if r.objectives],
                             lambda r: [r.objectives[n] for n in names], objectives)
        return ranked + [r for r in records if not r.objectives]
    maximize = oracle.objective.direction == "max"
    records.sort(key=lambda r: (r.score is None, -(r.score or 0) if maximize else (r.score or 0)))
    return records


def summary_table(tuner, num_trials: int = 10) -> str:
    """A text table of the best ``num_trials`` trials and the search's totals."""
    check_search(tuner)
    check_positive("num_trials", num_trials, integer=True)
    records = trial_records(tuner)
    names = [o.name for o in several_objectives(tuner.oracle)] or [tuner.oracle.objective.name]
    keys = sorted({k for r in records[:num_trials] for k in r.hyperparameters
                   if not k.startswith("tuner/")})
    lines = [f"{'rank':>4} {'trial':>6} {'status':<9} {'epochs':>6} "
             + " ".join(f"{name:>14}" for name in names) + "  hyperparameters"]
    for rank, record in enumerate(records[:num_trials], 1):
        status = f"PRUNED@{record.pruned_after}" if record.pruned else record.status
        scores = record.objectives or {names[0]: record.score}
        shown = " ".join(f"{'-' if scores.get(n) is None else f'{scores[n]:.4f}':>14}"
                         for n in names)
        values = ", ".join(f"{k}={_short(record.hyperparameters[k])}" for k in keys
                           if k in record.hyperparameters)
        epochs = f"{record.epochs}{'' if record.epochs_exact else '+'}"
        lines.append(f"{rank:>4} {record.trial_id:>6} {status:<9} {epochs:>6} {shown}  {values}")
    total_epochs = sum(r.epochs if r.epochs_all_executions is None else r.epochs_all_executions
                       for r in records)
    pruned = sum(r.pruned for r in records)
    failed = sum(r.status in ("FAILED", "INVALID") for r in records)
    inexact = any(not r.epochs_exact for r in records)
    several = any(r.epochs_all_executions not in (None, r.epochs) for r in records)
    lines.append(f"\n{len(records)} trials, {pruned} pruned, {failed} failed, "
                 f"{'at least ' if inexact else ''}{total_epochs} epochs trained in all"
                 + (" (every execution counted; the table's epochs are per execution)"
                    if several else "")
                 + (" (PRUNED@E: stopped after epoch E, counted from 1)" if pruned else "")
                 + ("\nN+: the trial reported its best epoch, N, only (KerasTuner's own tuners "
                    "do); it may have trained more" if inexact else ""))
    return "\n".join(lines)


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plot_score_by_trial(records, name, path):
    import matplotlib.pyplot as plt

    order = sorted(records, key=lambda r: int(r.trial_id) if r.trial_id.isdigit() else r.trial_id)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for pruned, marker, label in ((False, "o", "completed"), (True, "x", "pruned")):
        points = [(i, r.score) for i, r in enumerate(order) if r.pruned == pruned and r.score is not None]
        if points:
            ax.scatter(*zip(*points), marker=marker, label=label)
    ax.set_xlabel("trial")
    ax.set_ylabel(name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_score_vs(records, key, name, path, log_scale: bool):
    """Score against one hyperparameter; ``log_scale``: the search sampled it on a log scale."""
    import matplotlib.pyplot as plt

    points = [(r.hyperparameters[key], r.score) for r in records
              if key in r.hyperparameters and r.score is not None]
    if not points:
        return False
    xs, ys = zip(*points)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
        ax.scatter(xs, ys)
        if log_scale and all(x > 0 for x in xs):
            from matplotlib import ticker

            ax.set_xscale("log")
            if max(xs) / min(xs) < 100:  # two decades or less: ticks at 1, 2 and 5 per decade
                ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    else:
        labels = sorted({str(x) for x in xs})
        ax.scatter([labels.index(str(x)) for x in xs], ys)
        ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_xlabel(f"{key} (log scale)" if ax.get_xscale() == "log" else key)
    ax.set_ylabel(name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _log_sampled(tuner) -> set[str]:
    """Names of the hyperparameters the search samples on a log scale."""
    return {hp.name for hp in tuner.oracle.get_space().space
            if getattr(hp, "sampling", None) in ("log", "reverse_log")}


def _plot_learning_curves(records, name, path, labelled=10, note=None):
    """Every trial's objective per epoch (1-based); the ``labelled`` best in colour
    with their trial id, pruned trials dashed; ``note`` added to the title."""
    import matplotlib.pyplot as plt

    with_curve = [r for r in records if r.curve]
    fig, ax = plt.subplots(figsize=(7, 4))
    for rank, record in enumerate(with_curve):
        epochs, values = zip(*record.curve)
        style = dict(linestyle="--" if record.pruned else "-", marker=".")
        if rank < labelled:
            ax.plot(epochs, values, label=f"trial {record.trial_id}"
                    + (" (pruned)" if record.pruned else ""), **style)
        else:
            ax.plot(epochs, values, color="0.7", linewidth=0.8, **style)
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    title = f"{len(with_curve)} trials"
    if len(with_curve) > labelled:
        title += f", the {labelled} best in colour"
    if note:
        title += f"; {note}"
    ax.set_title(title, fontsize="medium")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _hparam(hp, hp_api):
    """The TensorBoard ``HParam`` (name and domain) of a KerasTuner hyperparameter."""
    from keras_tuner.engine import hyperparameters as kt_hp

    if isinstance(hp, kt_hp.Choice):
        domain = hp_api.Discrete(list(hp.values))
    elif isinstance(hp, kt_hp.Boolean):
        domain = hp_api.Discrete([False, True])
    elif isinstance(hp, kt_hp.Int):
        domain = hp_api.IntInterval(int(hp.min_value), int(hp.max_value))
    elif isinstance(hp, kt_hp.Float):
        domain = hp_api.RealInterval(float(hp.min_value), float(hp.max_value))
    else:  # Fixed
        domain = hp_api.Discrete([hp.value])
    return hp_api.HParam(hp.name, domain)


def _holds_hparams(path: str) -> bool:
    """Whether the event file ``path`` holds HParams summaries (a report's, so written
    by :func:`write_hparams_logs`); a file cut short counts by what it holds."""
    import tensorflow as tf

    try:  # read as TFRecords: tf.compat.v1.train.summary_iterator prints a deprecation warning
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            if any(value.metadata.plugin_data.plugin_name == "hparams"
                   for value in event.summary.value):
                return True
    except tf.errors.DataLossError:
        pass
    return False


def _remove_earlier_hparams_logs(log_dir: str) -> None:
    """Delete the event files of an earlier report in ``log_dir`` (a resumed search's
    report is written again): TensorBoard would show both, a trial's old score beside
    its new one. Event files without HParams summaries are left alone."""
    import glob

    for folder in [log_dir, *sorted(glob.glob(os.path.join(glob.escape(log_dir), "trial_*")))]:
        for path in glob.glob(os.path.join(glob.escape(folder), "events.out.tfevents.*")):
            if _holds_hparams(path):
                os.remove(path)


def write_hparams_logs(tuner, log_dir: str) -> None:
    """Write TensorBoard HParams summaries: the experiment and one run per trial,
    replacing those of an earlier call with the same ``log_dir``."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp_api

    check_search(tuner)
    _remove_earlier_hparams_logs(log_dir)
    oracle = tuner.oracle
    name = objective_name(oracle)
    names = [o.name for o in several_objectives(oracle)] or [name]
    hparams = {hp.name: _hparam(hp, hp_api) for hp in oracle.get_space().space}
    with tf.summary.create_file_writer(log_dir).as_default():
        hp_api.hparams_config(hparams=list(hparams.values()),
                              metrics=[hp_api.Metric(n, display_name=n) for n in names])
    for record in trial_records(tuner):
        if record.score is None:
            continue
        values = {hparams[k]: v for k, v in record.hyperparameters.items() if k in hparams}
        with tf.summary.create_file_writer(os.path.join(log_dir, f"trial_{record.trial_id}")).as_default():
            hp_api.hparams(values, trial_id=record.trial_id)
            last_epoch = record.curve[-1][0] if record.curve else 0
            for metric, value in (record.objectives or {name: record.score}).items():
                tf.summary.scalar(metric, value, step=last_epoch)  # epochs from 1


def _write_pareto_front(tuner, output_dir: str) -> list[str]:
    """``pareto_front.json`` and ``pareto_front.png`` (the first two objectives, every
    completed trial, the front joined) for a tuner with ``pareto_front()``."""
    import matplotlib.pyplot as plt

    oracle = tuner.oracle
    objectives = oracle.objective.objectives
    completed = [t for t in oracle.trials.values()
                 if t.status == "COMPLETED" and t.trial_id not in oracle.pruned_trials]
    front = tuner.pareto_front()
    path_json = os.path.join(output_dir, "pareto_front.json")
    with open(path_json, "w") as handle:
        json.dump([{"trial_id": t.trial_id,
                    "objectives": dict(zip([o.name for o in objectives],
                                           oracle.objective_values(t))),
                    "hyperparameters": _trained_with(t.hyperparameters.values)} for t in front],
                  handle, indent=2, default=str)
    fig, ax = plt.subplots(figsize=(6, 4))
    points = [oracle.objective_values(t)[:2] for t in completed]
    if points:
        ax.scatter(*zip(*points), color="0.6", label="trials")
    line = sorted(oracle.objective_values(t)[:2] for t in front)
    if line:
        ax.plot(*zip(*line), "o-", color="C3", label="Pareto front")
        for trial in front:
            ax.annotate(trial.trial_id, oracle.objective_values(trial)[:2], fontsize=7)
    ax.set_xlabel(f"{objectives[0].name} ({objectives[0].direction})")
    ax.set_ylabel(f"{objectives[1].name} ({objectives[1].direction})")
    ax.legend()
    fig.tight_layout()
    path_png = os.path.join(output_dir, "pareto_front.png")
    fig.savefig(path_png, dpi=100)
    plt.close(fig)
    return [path_json, path_png]


def write_report(tuner, output_dir: str, num_trials: int = 10) -> dict:
    """Write the summary, best hyperparameters, plots and HParams logs.

    Returns ``{"summary": str, "files": [paths written]}``.
    """
    check_search(tuner)
    check_positive("num_trials", num_trials, integer=True)
    import matplotlib

    matplotlib.use("Agg")
    os.makedirs(output_dir, exist_ok=True)
    records = trial_records(tuner)
    name = objective_name(tuner.oracle)
    files = []
    summary = summary_table(tuner, num_trials)
    path = os.path.join(output_dir, "summary.txt")
    with open(path, "w") as handle:
        handle.write(summary + "\n")
    files.append(path)
    best = next((r for r in records if r.score is not None), None)
    path = os.path.join(output_dir, "best_hyperparameters.json")
    with open(path, "w") as handle:
        json.dump({"trial_id": best.trial_id if best else None,
                   "score": best.score if best else None,
                   "objective": name,
                   **({"objectives": best.objectives} if best and best.objectives else {}),
                   "hyperparameters": best.hyperparameters if best else {}}, handle, indent=2,
                  default=str)
    files.append(path)
    scored = [r for r in records if r.score is not None]
    if scored:
        path = os.path.join(output_dir, "score_by_trial.png")
        _plot_score_by_trial(records, name, path)
        files.append(path)
        keys = sorted({k for r in scored for k in r.hyperparameters if not k.startswith("tuner/")})
        log_sampled = _log_sampled(tuner)
        for key in keys:
            path = os.path.join(output_dir, f"score_vs_{key.replace('/', '_')}.png")
            if _plot_score_vs(scored, key, name, path, log_scale=key in log_sampled):
                files.append(path)
        path = os.path.join(output_dir, "learning_curves.png")
        _plot_learning_curves(records, name, path, note=_single_point_note(tuner, records))
        files.append(path)
        hparams_dir = os.path.join(output_dir, "hparams")
        write_hparams_logs(tuner, hparams_dir)
        files.append(hparams_dir)
    if hasattr(tuner, "pareto_front") and several_objectives(tuner.oracle):
        files += _write_pareto_front(tuner, output_dir)
    return {"summary": summary, "files": files}


__all__ = ["TrialRecord", "objective_name", "several_objectives", "summary_table", "trial_records",
           "write_hparams_logs", "write_report"]
