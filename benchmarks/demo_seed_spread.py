"""The `trainkit demo` CNN recipe trained several times on one data split.

The control for `trainkit tune`'s figures (docs/benchmarks.md): for each split
seed S (the split of `trainkit demo --seed S` and `trainkit tune --seed S`),
the demo's CNN recipe is trained ``--runs`` times with training seeds S,
S + 1000, S + 2000, ... (run 0 is exactly `trainkit demo --models cnn --seed S`).
It prints each run's test accuracy, their mean, and the test accuracy of the
runs averaged into one model (``models.average_models``): how far a single run
of the recipe moves with its seed, and what averaging the recipe's own runs
gives, beside what a search and its ensemble give.

Run:  python benchmarks/demo_seed_spread.py --seeds 5 6 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_trainkit.commands import demo  # noqa: E402
from keras_trainkit.models import average_models  # noqa: E402


def spread(split_seed: int, runs: int, dataset: str = "mnist1d", model: str = "cnn") -> dict:
    """Train the demo recipe ``runs`` times on split ``split_seed``; test accuracies."""
    data = demo.split(dataset, split_seed)
    recipe = dict(demo.RECIPES[dataset][model])
    x_test, y_test = data[2]
    accuracies, models = [], []
    for run in range(runs):
        seed = split_seed + 1000 * run
        with tempfile.TemporaryDirectory() as output:
            result, trained = demo.train_one(model, dataset, data, recipe, seed, Path(output), 0)
        accuracies.append(result["test_accuracy"])
        models.append(trained)
        print(f"split {split_seed}, run {run} (seed {seed}): test accuracy "
              f"{result['test_accuracy']:.4f} ({result['seconds']:.0f} s)", flush=True)
    averaged = average_models(models).predict(x_test, verbose=0)
    return {"split_seed": split_seed, "runs": accuracies, "mean": float(np.mean(accuracies)),
            "averaged": float(np.mean(np.argmax(averaged, axis=1) == y_test))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dataset", default="mnist1d", choices=sorted(demo.RECIPES))
    args = parser.parse_args()
    if args.runs < 1:
        raise ValueError(f"Argument `--runs` must be >= 1. Received: runs={args.runs}")
    start = time.perf_counter()
    rows = [spread(seed, args.runs, args.dataset) for seed in args.seeds]
    print(f"\n{'split':>5} {'run 0 (= demo)':>14} {'runs min-max':>14} {'mean':>7} "
          f"{'averaged':>9}")
    for row in rows:
        print(f"{row['split_seed']:>5} {row['runs'][0]:>14.4f} "
              f"{min(row['runs']):>6.4f}-{max(row['runs']):.4f} {row['mean']:>7.4f} "
              f"{row['averaged']:>9.4f}")
    print(json.dumps(rows))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
