"""The report of a finished (or running) search: table, JSON, plots, HParams logs.

``write_report(tuner, output_dir)`` reads the tuner's oracle (so it works on a
search reloaded from disk) and writes:

* ``summary.txt``: the best trials, ranked, with status (pruned trials marked),
  epochs trained, score and hyperparameters;
* ``best_hyperparameters.json``;
* ``score_by_trial.png``, ``score_vs_<hyperparameter>.png`` (one per tuned
  hyperparameter) and ``learning_curves.png`` (the best trials' objective per
  epoch);
* ``hparams/``: TensorBoard HParams logs (an experiment config and one run per
  trial with its hyperparameters and objective), readable by TensorBoard's
  HParams dashboard.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

FINISHED = ("COMPLETED", "FAILED", "INVALID")


@dataclass
class TrialRecord:
    """One trial as the report sees it."""

    trial_id: str
    status: str
    score: float | None
    epochs: int
    pruned: bool
    hyperparameters: dict
    curve: list[tuple[int, float]] = field(default_factory=list)
    message: str | None = None


def trial_records(tuner) -> list[TrialRecord]:
    """Every trial of ``tuner``'s oracle, best first (finished trials without a
    score last)."""
    oracle = tuner.oracle
    name = oracle.objective.name
    pruned = getattr(oracle, "pruned_trials", {})
    records = []
    for trial in oracle.trials.values():
        curve = []
        if trial.metrics.exists(name):
            curve = [(int(obs.step), float(obs.value[0])) for obs in trial.metrics.get_history(name)]
        score = trial.score if trial.score is not None and np.isfinite(trial.score) else None
        records.append(TrialRecord(
            trial_id=trial.trial_id, status=trial.status, score=score,
            epochs=(max(step for step, _ in curve) + 1) if curve else 0,
            pruned=trial.trial_id in pruned, hyperparameters=dict(trial.hyperparameters.values),
            curve=curve, message=trial.message))
    maximize = oracle.objective.direction == "max"
    records.sort(key=lambda r: (r.score is None, -(r.score or 0) if maximize else (r.score or 0)))
    return records


def summary_table(tuner, num_trials: int = 10) -> str:
    """A text table of the best ``num_trials`` trials and the search's totals."""
    records = trial_records(tuner)
    name = tuner.oracle.objective.name
    keys = sorted({k for r in records[:num_trials] for k in r.hyperparameters
                   if not k.startswith("tuner/")})
    lines = [f"{'rank':>4} {'trial':>6} {'status':<9} {'epochs':>6} {name:>14}  hyperparameters"]
    for rank, record in enumerate(records[:num_trials], 1):
        status = "PRUNED" if record.pruned else record.status
        score = f"{record.score:.4f}" if record.score is not None else "-"
        values = ", ".join(f"{k}={_short(record.hyperparameters[k])}" for k in keys
                           if k in record.hyperparameters)
        lines.append(f"{rank:>4} {record.trial_id:>6} {status:<9} {record.epochs:>6} {score:>14}  {values}")
    total_epochs = sum(r.epochs for r in records)
    pruned = sum(r.pruned for r in records)
    failed = sum(r.status in ("FAILED", "INVALID") for r in records)
    lines.append(f"\n{len(records)} trials, {pruned} pruned, {failed} failed, "
                 f"{total_epochs} epochs trained in all")
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


def _plot_score_vs(records, key, name, path):
    import matplotlib.pyplot as plt

    points = [(r.hyperparameters[key], r.score) for r in records
              if key in r.hyperparameters and r.score is not None]
    if not points:
        return False
    xs, ys = zip(*points)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
        ax.scatter(xs, ys)
        positive = all(x > 0 for x in xs)
        if positive and max(xs) / min(xs) > 100:
            ax.set_xscale("log")
    else:
        labels = sorted({str(x) for x in xs})
        ax.scatter([labels.index(str(x)) for x in xs], ys)
        ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_xlabel(key)
    ax.set_ylabel(name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _plot_learning_curves(records, name, path, top=5):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for record in [r for r in records if r.curve][:top]:
        steps, values = zip(*record.curve)
        ax.plot(steps, values, marker=".", label=f"trial {record.trial_id}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _hparam(hp, hp_api):
    """The TensorBoard ``HParam`` (name and domain) of a KerasTuner hyperparameter."""
    from keras_tuner.src.engine import hyperparameters as kt_hp

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


def write_hparams_logs(tuner, log_dir: str) -> None:
    """Write TensorBoard HParams summaries: the experiment and one run per trial."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp_api

    oracle = tuner.oracle
    name = oracle.objective.name
    hparams = {hp.name: _hparam(hp, hp_api) for hp in oracle.get_space().space}
    with tf.summary.create_file_writer(log_dir).as_default():
        hp_api.hparams_config(hparams=list(hparams.values()),
                              metrics=[hp_api.Metric(name, display_name=name)])
    for record in trial_records(tuner):
        if record.score is None:
            continue
        values = {hparams[k]: v for k, v in record.hyperparameters.items() if k in hparams}
        with tf.summary.create_file_writer(os.path.join(log_dir, f"trial_{record.trial_id}")).as_default():
            hp_api.hparams(values, trial_id=record.trial_id)
            tf.summary.scalar(name, record.score, step=max(record.epochs - 1, 0))


def write_report(tuner, output_dir: str, num_trials: int = 10) -> dict:
    """Write the summary, best hyperparameters, plots and HParams logs.

    Returns ``{"summary": str, "files": [paths written]}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    os.makedirs(output_dir, exist_ok=True)
    records = trial_records(tuner)
    name = tuner.oracle.objective.name
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
                   "hyperparameters": best.hyperparameters if best else {}}, handle, indent=2,
                  default=str)
    files.append(path)
    scored = [r for r in records if r.score is not None]
    if scored:
        path = os.path.join(output_dir, "score_by_trial.png")
        _plot_score_by_trial(records, name, path)
        files.append(path)
        keys = sorted({k for r in scored for k in r.hyperparameters if not k.startswith("tuner/")})
        for key in keys:
            path = os.path.join(output_dir, f"score_vs_{key.replace('/', '_')}.png")
            if _plot_score_vs(scored, key, name, path):
                files.append(path)
        path = os.path.join(output_dir, "learning_curves.png")
        _plot_learning_curves(scored, name, path)
        files.append(path)
        hparams_dir = os.path.join(output_dir, "hparams")
        write_hparams_logs(tuner, hparams_dir)
        files.append(hparams_dir)
    return {"summary": summary, "files": files}


__all__ = ["TrialRecord", "summary_table", "trial_records", "write_hparams_logs", "write_report"]
