"""Several worker processes on one Optuna storage: trials per hour and repeated or lost trials.

Starts ``--workers`` processes (for each count given) with the same command on one
SQLite storage; each runs ``tuning.OptunaSearch`` over a small MNIST-1D MLP recipe
(``--epochs`` epochs per trial) until the study has ``--trials`` trials. Prints, per
worker count, the wall time from the first start to the last exit, the workers' CPU
time (user + system, from ``getrusage(RUSAGE_CHILDREN)``) per trial and the cores they
used on average, trials per hour, and the checks: completed trials, trials whose values ran twice (repeated), places
without a completed trial (lost), and the workers that ran trials.

    python benchmarks/optuna_workers.py --workers 1 4 --trials 40 --epochs 3

The processes share the host's cores: on a machine with fewer cores than workers the
speed-up is bounded by the cores, not by the storage; on a machine that other jobs
load, more workers also take a larger share of it (see "cores used").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def worker(directory: str, trials: int, epochs: int) -> None:
    from keras_trainkit import datasets, tuning

    (x, y), _ = datasets.load_mnist1d()
    hypermodel = tuning.RecipeHyperModel(
        (40,), 10, architecture=tuning.MLPSpace(depth=(1, 2), widths=(64, 128)),
        training=tuning.TrainingSpace(batch_sizes=(128,), epochs=epochs, clipping=False))
    tuner = tuning.OptunaSearch(hypermodel, sampler="tpe", max_trials=trials, seed=0,
                                directory=directory, project_name="workers")
    tuner.search(x[:3200], y[:3200], validation_data=(x[3200:], y[3200:]), verbose=0)


def measure(count: int, trials: int, epochs: int) -> dict:
    import optuna

    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        processes = [subprocess.Popen([sys.executable, __file__, "--worker", directory,
                                       "--trials", str(trials), "--epochs", str(epochs)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True) for _ in range(count)]
        for process in processes:
            _, errors = process.communicate()
            if process.returncode:
                raise RuntimeError(errors[-2000:])
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, all exited
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        study = optuna.load_study(study_name="workers",
                                  storage=f"sqlite:///{directory}/workers/optuna.db")
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        values = [json.dumps(t.params, sort_keys=True) for t in complete]
        workers = {t.user_attrs["trainkit_worker"]["pid"] for t in complete}
        return {"workers": count, "seconds": seconds, "cpu": cpu, "complete": len(complete),
                "repeated": len(values) - len(set(values)),
                "lost": trials - len(complete), "active": len(workers),
                "per_hour": 3600 * len(complete) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.trials, args.epochs)
        return
    print(f"{args.trials} trials of {args.epochs} epochs, {os.cpu_count()} CPU cores", flush=True)
    results = [measure(count, args.trials, args.epochs) for count in args.workers]
    base = results[0]["per_hour"]
    for r in results:
        print(f"workers={r['workers']} time={r['seconds']:.0f}s cpu={r['cpu']:.0f}s "
              f"(cpu/trial={r['cpu'] / max(1, r['complete']):.1f}s, "
              f"cores used={r['cpu'] / r['seconds']:.2f}) trials/hour={r['per_hour']:.0f} "
              f"(x{r['per_hour'] / base:.2f}) complete={r['complete']} repeated={r['repeated']} "
              f"lost={r['lost']} workers that ran trials={r['active']}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
