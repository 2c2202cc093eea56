"""Search efficiency of pruning, and memory of in-process vs isolated trials.

Part 1 (``--part efficiency``): on MNIST-1D with one search space and the same
seeds, KerasTuner ``RandomSearch`` without pruning (``--trials`` trials) against
the same search with our median and ASHA pruning, with the same number of
trials and with twice as many (pruning frees epochs for more configurations),
and KerasTuner ``Hyperband``. Selection uses the
validation split only (the last 20% of the training set); the test split is
used once, for the best model. Prints, per method and over the seeds, the best
validation accuracy, the best model's test accuracy, the epochs trained and
the wall time, then the ratios against unpruned RandomSearch.

Part 2 (``--part memory``): the search process's resident set size (RSS) after
each of N small trials, in-process vs ``isolate_trials=True``; prints the growth
per trial (least-squares slope).

    python benchmarks/tuning_efficiency.py --part efficiency --seeds 3 --trials 12 --epochs 10
    python benchmarks/tuning_efficiency.py --part memory --memory-trials 50
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from keras_trainkit import tuning  # noqa: E402
from keras_trainkit.commands.tune import split  # noqa: E402


def recipe(epochs: int, seed: int):
    return tuning.RecipeHyperModel(
        (40,), 10, architecture=tuning.MLPSpace(depth=(1, 3), widths=(64, 128, 256, 512)),
        optimizer=tuning.OptimizerSpace(families=("adamw", "adam", "sgd")),
        training=tuning.TrainingSpace(batch_sizes=(32, 64, 128), epochs=epochs),
        seed=seed)


def epochs_trained(tuner) -> int:
    """Epochs actually trained over all trials.

    Our tuners report every epoch, so a trial's history has one entry per epoch.
    KerasTuner's Hyperband reports once per trial; its trials train from
    ``tuner/initial_epoch`` to ``tuner/epochs``.
    """
    total = 0
    for trial in tuner.oracle.trials.values():
        values = trial.hyperparameters.values
        if "tuner/epochs" in values:
            total += values["tuner/epochs"] - values.get("tuner/initial_epoch", 0)
        elif trial.metrics.exists("val_accuracy"):
            total += len(trial.metrics.get_history("val_accuracy"))
    return total


METHODS = ["random", "median", "asha", "median_2x", "asha_2x", "hyperband"]


def run_method(method, seed, trials, epochs, data, folder):
    train, validation, (x_test, y_test) = data
    common = dict(objective="val_accuracy", seed=seed, directory=folder, project_name=method,
                  overwrite=True)
    if method == "hyperband":
        tuner = keras_tuner.Hyperband(recipe(epochs, seed), max_epochs=epochs, factor=3,
                                      hyperband_iterations=1, **common)
    else:
        rule = method.split("_")[0]
        pruner = {"random": None, "median": tuning.MedianPruner(startup_trials=3, warmup_epochs=2),
                  "asha": tuning.ASHAPruner(min_epochs=1, reduction_factor=3)}[rule]
        if method.endswith("_2x"):
            trials *= 2
        tuner = tuning.RandomSearch(recipe(epochs, seed), max_trials=trials, pruner=pruner,
                                    **common)
    started = time.perf_counter()
    tuner.search(*train, validation_data=validation, verbose=0)
    seconds = time.perf_counter() - started
    best_trial = tuner.oracle.get_best_trials(1)[0]
    best_model = tuner.get_best_models(1)[0]
    test_accuracy = float(np.mean(np.argmax(best_model.predict(x_test, verbose=0), 1) == y_test))
    return {"val": float(best_trial.score), "test": test_accuracy,
            "epochs": epochs_trained(tuner), "seconds": seconds,
            "trials": len(tuner.oracle.trials)}


def efficiency(args):
    data = split("mnist1d")
    methods = METHODS
    results = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            for method in methods:
                result = run_method(method, seed, args.trials, args.epochs, data, folder)
                results[method].append(result)
                print(f"seed {seed} {method:<9} val={result['val']:.4f} test={result['test']:.4f} "
                      f"epochs={result['epochs']:>4} trials={result['trials']:>3} "
                      f"time={result['seconds']:.0f}s", flush=True)
    base = results["random"]
    print(f"\n{'method':<10} {'best val (mean)':>15} {'test (mean)':>12} {'epochs':>8} "
          f"{'time s':>8} {'epochs vs random':>17} {'val - random':>13}")
    for method in methods:
        rows = results[method]
        val = np.mean([r["val"] for r in rows])
        print(f"{method:<10} {val:>15.4f} {np.mean([r['test'] for r in rows]):>12.4f} "
              f"{sum(r['epochs'] for r in rows):>8} {sum(r['seconds'] for r in rows):>8.0f} "
              f"{sum(r['epochs'] for r in rows) / sum(r['epochs'] for r in base):>17.2f} "
              f"{100 * (val - np.mean([r['val'] for r in base])):>+12.2f}pt")


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory(args):
    train, validation, _ = split("mnist1d")
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
                progress=lambda tuner, trial: samples.append(rss_mb()))
            tuner.search(*small, validation_data=(validation[0][:128], validation[1][:128]),
                         verbose=0)
        slope = np.polyfit(np.arange(len(samples)), samples, 1)[0]
        print(f"{'isolated' if isolate else 'in-process':<10} {samples[0]:>12.1f} "
              f"{samples[-1]:>12.1f} {slope:>16.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["efficiency", "memory", "all"], default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--memory-trials", type=int, default=50)
    args = parser.parse_args()
    if args.part in ("efficiency", "all"):
        efficiency(args)
    if args.part in ("memory", "all"):
        memory(args)


if __name__ == "__main__":
    main()
