"""Search efficiency of pruning, and memory of in-process vs isolated trials.

Part 1 (``--part efficiency``): on MNIST-1D with one search space (an MLP recipe)
and the same seeds, KerasTuner ``RandomSearch`` without pruning (``--trials``
trials of ``--epochs`` epochs) against our ``RandomSearch`` with the median and
the ASHA rule, and KerasTuner ``Hyperband`` (``max_epochs=--epochs``, factor 3,
one iteration). Selection uses the validation split only (the last 20% of the
training set); the test split is used once, for the best model of each search.

Each pruned search runs with the unpruned search's epoch budget
(``trials * epochs``) and reports three views of that one run, in the order
its trials ran (trial ``k``'s hyperparameters do not depend on pruning, and
pruning decisions only on earlier trials, so a prefix of the run is exactly
the shorter search):

* ``median`` / ``asha``: its first ``--trials`` trials (same trials as unpruned);
* ``...@50%``: its longest prefix of trials within half the unpruned epochs;
* ``...@100%``: the whole run (equal epochs; pruning buys more trials).

Ops are deterministic (``tf.config.experimental.enable_op_determinism``; the
recipe seeds Keras before every build), so a configuration trains identically
whether or not it is pruned; the script checks this (same hyperparameters and
the same per-epoch validation accuracy for every epoch both runs trained) and
prints the result. Every search's oracle gets ``tuning.seed_oracle``, so the
seeds give independent hyperparameter streams. Pruner settings are fixed once, before the
run, for every seed (median: 1 startup trial, 1 warm-up epoch; ASHA: first
rung after 2 epochs, reduction factor 3); both were chosen on the replays of
an earlier run (seeds 1-3 of the oracles' old, overlapping seed streams), so
this run's seeds are held out.

Last, the unpruned searches are replayed through a grid of pruner settings
(the same-trials view, exact for a sequential search; checked against the live
pruned searches first).

Prints one line per seed and method (best validation accuracy, the best
model's test accuracy, epochs trained, trials, pruned trials, wall time up to
the end of the view's last trial), then the means over seeds and the ratios
against unpruned RandomSearch.

The Optuna samplers (``--methods optuna_tpe optuna_random optuna_cmaes optuna_gp
optuna_qmc``; ``tuning.OptunaSearch``, unpruned, ``--trials`` trials, seeded with
the search's seed) search the same space with the same trial budget. With
``--space cnn_focused`` they search the MNIST-1D CNN space of ``trainkit tune``
(``--space focused``, whose defaults are the ``trainkit demo`` recipe) instead of
the MLP space; afterwards the demo recipe itself is trained on the same split
(seed 0) for its own 30 epochs and for ``--epochs``, and a table gives each
search's best validation accuracy and the trials it took to reach those two
scores and any ``--reach`` values, with the medians over seeds. TPE draws its
first trials at random (a fifth of ``--trials``, at most Optuna's 10:
``optuna_samplers.startup_trials``) with the same per-trial seeds as
``optuna_random``, so the two searches share those trials.

Part 2 (``--part memory``): the search process's resident set size (RSS) after
each of N small trials, in-process vs ``isolate_trials=True``; prints the growth
per trial (least-squares slope).

    python benchmarks/tuning_efficiency.py --part efficiency --seeds 3 --trials 12 --epochs 10
    python benchmarks/tuning_efficiency.py --part memory --memory-trials 50
    python benchmarks/tuning_efficiency.py --part efficiency --seed-list 21 22 --trials 8 \
        --epochs 4 --methods random optuna_random optuna_tpe
    python benchmarks/tuning_efficiency.py --part efficiency --space cnn_focused \
        --seed-list 41 42 43 44 --trials 25 --epochs 4 --methods optuna_random optuna_tpe \
        --reach 0.8 0.85
    python benchmarks/tuning_efficiency.py --part efficiency --space cnn_focused \
        --seed-list 51 52 --trials 25 --epochs 30 --methods optuna_random optuna_tpe \
        --reach 0.95 0.96 0.97 0.985 0.99 --dump cnn_51_52.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_tuner
import numpy as np
import tensorflow as tf

from keras_trainkit import datasets, tuning


def split(validation_fraction: float = 0.2):
    """MNIST-1D training, validation (the last fifth of the training set) and test arrays."""
    (x, y), test = datasets.load("mnist1d")
    cut = int(len(x) * (1 - validation_fraction))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:]), test


def recipe(epochs: int, seed: int, space: str = "mlp"):
    """The search space: the MLP recipe space, or (``"cnn_focused"``) the MNIST-1D
    CNN space of ``trainkit tune`` (``--space focused``), whose defaults are the
    ``trainkit demo`` recipe."""
    if space == "cnn_focused":
        from keras_trainkit.commands.tune import recipe as tune_recipe

        options = argparse.Namespace(dataset="mnist1d", model="cnn", space="focused",
                                     epochs=epochs, seed=seed)
        return tune_recipe(options, (40,), 10)
    return tuning.RecipeHyperModel(
        (40,), 10, architecture=tuning.MLPSpace(depth=(1, 3), widths=(64, 128, 256, 512)),
        optimizer=tuning.OptimizerSpace(families=("adamw", "adam", "sgd")),
        training=tuning.TrainingSpace(batch_sizes=(32, 64, 128), epochs=epochs),
        seed=seed)


RULES = ("median", "asha")
OPTUNA_METHODS = ["optuna_tpe", "optuna_random", "optuna_cmaes", "optuna_gp", "optuna_qmc"]
METHODS = ["random", *RULES, "hyperband", *OPTUNA_METHODS]


def make_pruner(rule, args):
    """The pruning rules, with settings fixed once for every seed (see --help)."""
    if rule == "median":
        return tuning.MedianPruner(startup_trials=args.median_startup,
                                   warmup_epochs=args.median_warmup)
    return tuning.ASHAPruner(min_epochs=args.asha_min_epochs,
                             reduction_factor=args.asha_factor)


class EpochBudgetRandomSearch(tuning.RandomSearch):
    """Our ``RandomSearch`` that stops once ``epoch_budget`` epochs were trained
    over all trials (the running trial stops at that epoch; none starts after)."""

    def __init__(self, *args, epoch_budget, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch_budget = epoch_budget
        self.epochs_used = 0

    def on_epoch_end(self, trial, model, epoch, logs=None):
        super().on_epoch_end(trial, model, epoch, logs=logs)
        self.epochs_used += 1
        if self.epochs_used >= self.epoch_budget:
            model.stop_training = True
            self.oracle.deadline = 0.0  # ``populate_space`` now ends the search


def trial_record(tuner, trial, ended_at):
    """What the tables need from one finished trial, in the order trials ran."""
    values = trial.hyperparameters.values
    history = ([float(obs.value[0]) for obs in trial.metrics.get_history("val_accuracy")]
               if trial.metrics.exists("val_accuracy") else [])
    if "tuner/epochs" in values:  # Hyperband reports once per trial
        epochs = values["tuner/epochs"] - values.get("tuner/initial_epoch", 0)
    else:  # our tuners report every epoch
        epochs = len(history)
    return {"id": trial.trial_id, "values": dict(values), "history": history,
            "epochs": int(epochs), "score": float(trial.score) if trial.score is not None
            else float("nan"), "status": trial.status, "ended_at": ended_at,
            "pruned": trial.trial_id in getattr(tuner.oracle, "pruned_trials", {})}


def search(method, seed, args, data, folder):
    """Run one search; return the tuner and its trial records in running order."""
    train, validation, _ = data
    records, started = [], time.perf_counter()

    def progress(tuner, trial):
        ended = tuner.oracle.get_trial(trial.trial_id)
        records.append(trial_record(tuner, ended, time.perf_counter() - started))

    common = {"objective": "val_accuracy", "seed": seed, "directory": folder,
              "project_name": f"{method}_{seed}", "overwrite": True}
    recipe_ = recipe(args.epochs, seed, args.space)
    if method == "hyperband":
        tuner = keras_tuner.Hyperband(recipe_, max_epochs=args.epochs, factor=3,
                                      hyperband_iterations=1, **common)
        tuning.seed_oracle(tuner.oracle, seed)  # independent seeds, like our oracles
    elif method == "random":
        tuner = tuning.RandomSearch(recipe_, max_trials=args.trials, progress=progress, **common)
    elif method in OPTUNA_METHODS:  # an Optuna sampler on the same space, unpruned
        tuner = tuning.OptunaSearch(recipe_, sampler=method.removeprefix("optuna_"),
                                    max_trials=args.trials, progress=progress, **common)
    else:
        # One pruned search with the unpruned search's epoch budget; its first
        # ``trials`` trials are the same-trials comparison, and its longest prefix
        # of trials within half the budget is the half-budget comparison.
        tuner = EpochBudgetRandomSearch(
            recipe_, max_trials=100 * args.trials, pruner=make_pruner(method, args),
            epoch_budget=args.trials * args.epochs, progress=progress, **common)
    tuner.search(*train, validation_data=validation, verbose=0)
    if method == "hyperband":  # KerasTuner's Hyperband takes no progress callback
        elapsed = time.perf_counter() - started
        records = [trial_record(tuner, trial, elapsed) for trial in tuner.oracle.trials.values()]
    return tuner, records


def summarize(tuner, records, data):
    """Best validation accuracy over ``records``, the best model's test accuracy,
    the epochs trained and the wall time up to the end of the last record."""
    x_test, y_test = data[2]
    scored = [r for r in records if np.isfinite(r["score"])]
    best = max(scored, key=lambda r: r["score"])  # first among equals
    model = tuner.load_model(tuner.oracle.get_trial(best["id"]))
    test = float(np.mean(np.argmax(model.predict(x_test, verbose=0), 1) == y_test))
    return {"val": best["score"], "test": test, "epochs": sum(r["epochs"] for r in records),
            "seconds": max(r["ended_at"] for r in records), "trials": len(records),
            "pruned": sum(r["pruned"] for r in records)}


def within_budget(records, budget):
    """The longest prefix of ``records`` whose epochs add up to at most ``budget``."""
    total, prefix = 0, []
    for record in records:
        total += record["epochs"]
        if total > budget:
            break
        prefix.append(record)
    return prefix


def same_training(pruned, unpruned):
    """Check that each configuration trained identically with and without pruning:
    the same hyperparameters and the same per-epoch validation accuracies for the
    epochs both runs trained. Returns (trials compared, trials identical, max |diff|)."""
    compared = identical = 0
    worst = 0.0
    for a, b in zip(pruned, unpruned):
        compared += 1
        n = min(len(a["history"]), len(b["history"]))
        diff = max((abs(x - y) for x, y in zip(a["history"][:n], b["history"][:n])),
                   default=0.0)
        worst = max(worst, diff)
        identical += a["values"] == b["values"] and diff == 0.0
    return compared, identical, worst


def replay(records, pruner):
    """The same-trials view of a pruned search, replayed from unpruned records.

    Exact for a sequential search: trials run one after another, and trial
    ``k``'s pruning decisions depend only on the epochs trials ``1..k-1`` trained
    (the oracle's rule, ``PruningOracleMixin.update_trial``). Returns the best
    validation accuracy and the epochs trained."""
    curves, best = [], -np.inf
    for record in records:
        curve = np.fmax.accumulate(np.nan_to_num(record["history"], nan=-np.inf))
        trained = len(curve)
        for step, value in enumerate(curve):
            others = [float(c[step]) for c in curves if len(c) > step and np.isfinite(c[step])]
            if np.isfinite(value) and pruner.decide(step, float(value), others):
                trained = step + 1
                break
        curves.append(curve[:trained])
        best = max(best, curve[trained - 1])
    return float(best), sum(len(c) for c in curves)


REPLAY_GRID = ([tuning.MedianPruner(startup_trials=n, warmup_epochs=w)
                for n in (1, 2, 3, 5) for w in (0, 1, 2)]
               + [tuning.ASHAPruner(min_epochs=m, reduction_factor=f)
                  for m in (1, 2, 3) for f in (2, 3)])


def print_replays(unpruned, live, args):
    """Replay the unpruned searches through a grid of pruner settings; first check
    the replay against the live pruned searches of the configured settings."""
    for (rule, seed), records in live.items():
        value, epochs = replay(unpruned[seed], make_pruner(rule, args))
        same = records[:args.trials]
        print(f"replay check, seed {seed} {rule}: replayed val={value:.4f} epochs={epochs}, "
              f"live val={max(r['score'] for r in same):.4f} "
              f"epochs={sum(r['epochs'] for r in same)}")
    print("\nSame-trials view replayed for other settings (points vs random, epoch fraction)")
    for pruner in REPLAY_GRID:
        cells, diffs, fractions = [], [], []
        for seed, records in unpruned.items():
            base_val = max(r["score"] for r in records)
            base_epochs = sum(r["epochs"] for r in records)
            value, epochs = replay(records, pruner)
            diffs.append(100 * (value - base_val))
            fractions.append(epochs / base_epochs)
            cells.append(f"{diffs[-1]:+.2f}, {fractions[-1]:.2f}")
        config = ", ".join(f"{k}={v}" for k, v in pruner.get_config().items())
        print(f"{pruner.name} {config:<36} " + " | ".join(cells)
              + f" | mean {np.mean(diffs):+.2f} pt, {np.mean(fractions):.2f}")


def demo_reference(epochs: int, data, seed: int = 0) -> float:
    """Best validation accuracy over the epochs (a trial's score) of the ``trainkit demo``
    recipe, the CNN focused space at its defaults, trained ``epochs`` epochs on this
    script's split with the demo's default seed."""
    train, validation, _ = data
    hypermodel = recipe(epochs, seed, "cnn_focused")
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)  # every hyperparameter at its default: the demo recipe
    history = hypermodel.fit(hp, model, *train, validation_data=validation, verbose=0)
    return float(max(history.history["val_accuracy"]))


def trials_to_reach(records, threshold: float):
    """The 1-based count of trials, in running order, until one scored ``>= threshold``
    (``None``: no trial did)."""
    for count, record in enumerate(records, 1):
        if np.isfinite(record["score"]) and record["score"] >= threshold:
            return count
    return None


def print_reach(dumped, args, data):
    """Per seed and method: best validation accuracy and trials to reach each threshold
    (the demo recipe's score at its own and at this run's epochs, and ``--reach``);
    then the medians over seeds (a search that never reached counts as infinite)."""
    from keras_trainkit.commands.demo import RECIPES

    thresholds = {}
    if args.space == "cnn_focused":
        full = RECIPES["mnist1d"]["cnn"]["epochs"]
        for epochs in sorted({full, args.epochs}, reverse=True):
            value = demo_reference(epochs, data)
            thresholds[f"demo@{epochs}ep={value:.4f}"] = value
            print(f"trainkit demo recipe, {epochs} epochs, seed 0: val={value:.4f}", flush=True)
    thresholds.update({f"{value:.4f}": value for value in args.reach})
    print(f"\nTrials to reach (of {args.trials}; '-': not reached)")
    print(f"{'seed':<6} {'method':<14} {'best val':>9} " + " ".join(f"{n:>18}" for n in thresholds))
    counts = {}
    for method in args.methods:
        for seed in args.seed_list:
            records = dumped[f"{method}_{seed}"]
            reached = [trials_to_reach(records, t) for t in thresholds.values()]
            for name, count in zip(thresholds, reached):
                counts.setdefault((method, name), []).append(np.inf if count is None else count)
            print(f"{seed:<6} {method:<14} {max(r['score'] for r in records):>9.4f} "
                  + " ".join(f"{'-' if c is None else c:>18}" for c in reached))
        print(f"{'median':<6} {method:<14} {'':>9} "
              + " ".join(f"{np.median(counts[method, n]):>18}" for n in thresholds))


def efficiency(args):
    if args.deterministic:
        # Same configuration, same seed -> the same training whether or not it
        # is pruned (otherwise float-order differences change chaotic trials).
        tf.config.experimental.enable_op_determinism()
    data = split()
    budget = args.trials * args.epochs
    rows = {}  # (label) -> list of per-seed results
    dumped = {}
    unpruned, live = {}, {}  # records by seed, by (rule, seed)
    labels = ["random", *[f"{rule}{suffix}" for rule in RULES
                          for suffix in ("", "@50%", "@100%")], "hyperband", *OPTUNA_METHODS]
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seed_list:
            base = None
            for method in args.methods:
                tuner, records = search(method, seed, args, data, folder)
                dumped[f"{method}_{seed}"] = records
                if args.dump:  # after every search, so a stopped run keeps what it did
                    with open(args.dump, "w") as handle:
                        json.dump(dumped, handle)
                if method in RULES:
                    views = {method: records[:args.trials],
                             f"{method}@50%": within_budget(records, budget // 2),
                             f"{method}@100%": records}
                else:
                    views = {method: records}
                for label, view in views.items():
                    result = summarize(tuner, view, data)
                    rows.setdefault(label, []).append(result)
                    print(f"seed {seed} {label:<12} val={result['val']:.4f} "
                          f"test={result['test']:.4f} epochs={result['epochs']:>4} "
                          f"trials={result['trials']:>3} pruned={result['pruned']:>3} "
                          f"time={result['seconds']:.0f}s", flush=True)
                if method == "random":
                    base = unpruned[seed] = records
                elif method in RULES and base is not None:
                    live[method, seed] = records
                    compared, identical, worst = same_training(records, base)
                    print(f"seed {seed} {method}: {identical} of {compared} trials trained "
                          f"identically to unpruned (same hyperparameters, same val accuracy "
                          f"per epoch); max |diff| {worst:.2e}", flush=True)
    if args.space == "cnn_focused" or args.reach:
        print_reach(dumped, args, data)
    if "random" not in rows:
        return
    base = rows["random"]
    base_val = np.mean([r["val"] for r in base])
    base_epochs = sum(r["epochs"] for r in base)
    print(f"\nMean over seeds {list(args.seed_list)} ({args.trials} trials x {args.epochs} "
          f"epochs unpruned; @50%/@100%: pruned search within 50%/100% of its epochs)")
    print(f"{'method':<12} {'best val':>9} {'test':>7} {'epochs':>7} {'trials':>7} "
          f"{'pruned':>7} {'time s':>7} {'epochs/random':>14} {'val-random':>11} "
          f"{'worst seed':>11}")
    for label in [l for l in labels if l in rows]:
        res = rows[label]
        val = np.mean([r["val"] for r in res])
        worst = min(r["val"] - b["val"] for r, b in zip(res, base))
        print(f"{label:<12} {val:>9.4f} {np.mean([r['test'] for r in res]):>7.4f} "
              f"{np.mean([r['epochs'] for r in res]):>7.1f} "
              f"{np.mean([r['trials'] for r in res]):>7.1f} "
              f"{np.mean([r['pruned'] for r in res]):>7.1f} "
              f"{np.mean([r['seconds'] for r in res]):>7.0f} "
              f"{sum(r['epochs'] for r in res) / base_epochs:>14.2f} "
              f"{100 * (val - base_val):>+10.2f}pt {100 * worst:>+10.2f}pt")
    print_replays(unpruned, live, args)


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory(args):
    train, validation, _ = split()
    small = (train[0][:256], train[1][:256])
    print(f"{'mode':<10} {'RSS first MB':>12} {'RSS last MB':>12} {'growth MB/trial':>16}")
    for isolate in (False, True):
        samples = []
        with tempfile.TemporaryDirectory() as folder:
            hypermodel = tuning.RecipeHyperModel(
                (40,), 10, architecture=tuning.MLPSpace(depth=(1, 2), widths=(32, 64)),
                training=tuning.TrainingSpace(batch_sizes=(128,), epochs=1, clipping=False))
            tuner = tuning.RandomSearch(
                hypermodel, max_trials=args.memory_trials, seed=0, directory=folder,
                project_name="memory", isolate_trials=isolate,
                progress=lambda tuner, trial, samples=samples: samples.append(rss_mb()))
            tuner.search(*small, validation_data=(validation[0][:128], validation[1][:128]),
                         verbose=0)
        slope = np.polyfit(np.arange(len(samples)), samples, 1)[0]
        print(f"{'isolated' if isolate else 'in-process':<10} {samples[0]:>12.1f} "
              f"{samples[-1]:>12.1f} {slope:>16.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["efficiency", "memory", "all"], default="all")
    parser.add_argument("--seeds", type=int, default=3,
                        help="run seeds 1 .. SEEDS")
    parser.add_argument("--seed-list", type=int, nargs="+", help="run these seeds instead")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--space", choices=["mlp", "cnn_focused"], default="mlp",
                        help="mlp (default): the MLP recipe space; cnn_focused: the MNIST-1D "
                             "CNN space of `trainkit tune` (its defaults: the demo recipe), "
                             "with trials-to-reach the demo recipe's validation accuracy")
    parser.add_argument("--reach", type=float, nargs="*", default=[],
                        help="also count the trials to reach these validation accuracies")
    parser.add_argument("--median-startup", type=int, default=1)
    parser.add_argument("--median-warmup", type=int, default=1)
    parser.add_argument("--asha-min-epochs", type=int, default=2)
    parser.add_argument("--asha-factor", type=int, default=3)
    parser.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                        help="skip tf.config.experimental.enable_op_determinism()")
    parser.add_argument("--dump", help="write every trial's record (JSON) here")
    parser.add_argument("--memory-trials", type=int, default=50)
    args = parser.parse_args()
    args.seed_list = args.seed_list or list(range(1, args.seeds + 1))
    if args.part in ("efficiency", "all"):
        efficiency(args)
    if args.part in ("memory", "all"):
        memory(args)


if __name__ == "__main__":
    main()
