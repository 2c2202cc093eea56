"""Trainer vs model.fit: time per epoch and memory, same model, data, seed and batch size.

One command measures every configuration, for an MLP and a 1-D CNN from
``keras_trainkit.models`` on MNIST-1D (4000 x 40), Adam 1e-3, batch 32, the same
initial weights (``keras.utils.set_random_seed(0)``) and shuffled data each epoch.
Each configuration runs in its own subprocess, so that its peak RSS is its own:

* ``fit``              model.fit at its defaults (jit_compile="auto": no XLA on CPU)
* ``fit-spe``          model.fit(steps_per_execution=k)
* ``fit-xla-spe``      model.fit(jit_compile=True, steps_per_execution=k)
* ``trainer``          Trainer at its defaults (jit_compile="auto", steps_per_execution=1)
* ``trainer-spe``      Trainer(steps_per_execution=k)
* ``trainer-xla-spe``  Trainer(jit_compile=True, steps_per_execution=k)

Time per epoch is the median over epochs 2..N (epoch 1 holds tracing and XLA
compilation; it is reported apart as "first epoch"); the process CPU time per
epoch (all threads) is printed beside it, a check that is less sensitive to other
jobs on a shared machine than wall time. With ``--repeats R`` the
configurations run R times in round-robin order (so that a change in machine load
hits all of them alike) and the median over repeats is reported. "Best fit" is the
fastest of the fit configurations measured. Memory: peak RSS of the process, and the
RSS growth from the end of epoch 2 to the end of epoch N, and the RSS slope over the
second half of the epochs (a least-squares line): allocators and tf.data buffers warm up
for some epochs and then stay flat, while a leak that keeps tensors per step shows as a
slope that does not go away.

Prints the table, the ratios Trainer / fit (against default fit and against the best
fit) and whether the issue's targets hold: Trainer at defaults <= 0.9x default fit,
the best Trainer <= 1.0x the best fit, peak RSS <= 1.1x fit's (same XLA setting), and
a late RSS slope no larger than fit's + 64 KiB/epoch.

Run: ``python benchmarks/trainer_vs_fit.py`` (defaults: ``--epochs 20 --k 16
--batch-size 32 --repeats 1``; ``--quick`` for a 3-epoch smoke check). Timings need
a quiet machine: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

CONFIGS = ("fit", "fit-spe", "fit-xla-spe", "trainer", "trainer-spe", "trainer-xla-spe")
FIT_CONFIGS = tuple(c for c in CONFIGS if c.startswith("fit"))
TRAINER_CONFIGS = tuple(c for c in CONFIGS if c.startswith("trainer"))
LABELS = {
    "fit": "fit (defaults)",
    "fit-spe": "fit(steps_per_execution=k)",
    "fit-xla-spe": "fit(jit_compile=True, steps_per_execution=k)",
    "trainer": "Trainer (defaults)",
    "trainer-spe": "Trainer(steps_per_execution=k)",
    "trainer-xla-spe": "Trainer(jit_compile=True, steps_per_execution=k)",
}
SLOPE_ALLOWANCE_KIB = 64.0


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _slope(values) -> float:
    """Least-squares slope of ``values`` against their index."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    return num / sum((i - mean_x) ** 2 for i in range(n))


def run_one(model_name: str, config: str, epochs: int, k: int, batch_size: int) -> dict:
    """Train one configuration in this process; returns its timings and memory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from keras_trainkit import datasets, models
    from keras_trainkit.training import Trainer

    (x, y), _ = datasets.load_mnist1d()
    keras.utils.set_random_seed(0)
    model = models.build(model_name, (40,), 10)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    times, cpu, rss = [], [], []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)
            cpu.append(time.process_time() - self.cpu)
            rss.append(_rss_mib())

    options = {
        "spe": dict(steps_per_execution=k),
        "xla-spe": dict(jit_compile=True, steps_per_execution=k),
    }.get(config.split("-", 1)[1] if "-" in config else "", {})
    common = dict(batch_size=batch_size, epochs=epochs, callbacks=[Clock()], verbose=0)
    if config in FIT_CONFIGS:
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"],
                      **options)
        history = model.fit(x, y, shuffle=True, **common)
    else:
        trainer = Trainer(model, keras.optimizers.Adam(1e-3), loss, ["accuracy"], seed=0, **options)
        history = trainer.fit(x, y, **common)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    late = rss[len(rss) // 2:]  # the second half of the epochs: warm-up is over
    return {"model": model_name, "config": config, "epoch_s": float(np.median(times[1:] or times)),
            "cpu_s": float(np.median(cpu[1:] or cpu)), "first_epoch_s": times[0],
            "peak_rss_mib": peak,
            "rss_growth_mib": rss[-1] - rss[min(1, len(rss) - 1)],
            "rss_slope_kib": _slope(late) * 1024,
            "final_loss": float(history.history["loss"][-1])}


def _median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _measure(model_name, config, args, epochs) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--one", model_name, config, "--epochs",
               str(epochs), "--k", str(args.k), "--batch-size", str(args.batch_size)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{model_name} {config} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _combine(runs) -> dict:
    """The median of each measure over repeated runs of one configuration."""
    out = dict(runs[0])
    for key in ("epoch_s", "cpu_s", "first_epoch_s", "peak_rss_mib", "rss_growth_mib", "rss_slope_kib",
                "final_loss"):
        out[key] = _median([r[key] for r in runs])
    out["epoch_s_all"] = [r["epoch_s"] for r in runs]
    return out


def _report(rows, model_names, args, epochs) -> None:
    print(f"\n{'model':<5} {'configuration':<50} {'ms/epoch':>9} {'CPU ms':>8} {'first ep s':>10} "
          f"{'peak RSS MiB':>12} {f'RSS ep2-{epochs} MiB':>16} {'late KiB/ep':>11} {'loss':>7}")
    for row in rows:
        print(f"{row['model']:<5} {LABELS[row['config']].replace('k)', f'{args.k})'):<50} "
              f"{row['epoch_s'] * 1000:9.1f} {row['cpu_s'] * 1000:8.0f} {row['first_epoch_s']:10.2f} "
              f"{row['peak_rss_mib']:12.1f} {row['rss_growth_mib']:+16.1f} "
              f"{row['rss_slope_kib']:+11.1f} {row['final_loss']:7.4f}")
    verdicts = []
    for model_name in model_names:
        by = {r["config"]: r for r in rows if r["model"] == model_name}
        fit_default = by["fit"]
        best_fit = min((by[c] for c in FIT_CONFIGS), key=lambda r: r["epoch_s"])
        best_trainer = min((by[c] for c in TRAINER_CONFIGS), key=lambda r: r["epoch_s"])
        print(f"\n{model_name}: ratios Trainer / fit (< 1: the Trainer is faster or smaller); "
              f"best fit = {best_fit['config']}")
        for ours in TRAINER_CONFIGS:
            twin = by[ours.replace("trainer", "fit")]
            print(f"  {ours:<16} time vs fit {by[ours]['epoch_s'] / fit_default['epoch_s']:5.2f}x"
                  f"   vs best fit {by[ours]['epoch_s'] / best_fit['epoch_s']:5.2f}x"
                  f"   vs {twin['config']} {by[ours]['epoch_s'] / twin['epoch_s']:5.2f}x"
                  f" (CPU time {by[ours]['cpu_s'] / twin['cpu_s']:4.2f}x)"
                  f"   peak RSS vs {twin['config']} "
                  f"{by[ours]['peak_rss_mib'] / twin['peak_rss_mib']:5.2f}x")
        verdicts += [
            (f"{model_name}: Trainer defaults <= 0.9x default fit",
             by["trainer"]["epoch_s"] <= 0.9 * fit_default["epoch_s"]),
            (f"{model_name}: best Trainer ({best_trainer['config']}) <= 1.0x best fit "
             f"({best_fit['config']})", best_trainer["epoch_s"] <= best_fit["epoch_s"]),
        ]
        for ours in TRAINER_CONFIGS:
            twin = by[ours.replace("trainer", "fit")]
            verdicts.append((f"{model_name}: {ours} peak RSS <= 1.1x {twin['config']}",
                             by[ours]["peak_rss_mib"] <= 1.1 * twin["peak_rss_mib"]))
            verdicts.append((f"{model_name}: {ours} late RSS slope <= {twin['config']}'s + "
                             f"{SLOPE_ALLOWANCE_KIB:.0f} KiB/epoch",
                             by[ours]["rss_slope_kib"]
                             <= twin["rss_slope_kib"] + SLOPE_ALLOWANCE_KIB))
    print("\ntargets")
    for text, ok in verdicts:
        print(f"  {'met    ' if ok else 'NOT MET'}  {text}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=16, help="steps per execution")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated subset (ratios need all six)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="round-robin repeats of every configuration (median reported)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--quick", action="store_true", help="3 epochs, for a smoke check")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    if epochs < 2:
        parser.error(f"--epochs must be at least 2 (epoch 1 holds compilation). Received: {epochs}")
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], epochs, args.k, args.batch_size)))
        return 0
    model_names = args.models.split(",")
    configs = args.configs.split(",")
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configurations {unknown}; choose from {list(CONFIGS)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # for the versions only

    print(f"MNIST-1D 4000 x 40, batch {args.batch_size}, Adam 1e-3, seed 0, {epochs} epochs, "
          f"k = {args.k}, {args.repeats} repeat(s); {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__}; "
          f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    runs = {}
    for repeat in range(args.repeats):
        for model_name in model_names:
            for config in configs:
                row = _measure(model_name, config, args, epochs)
                runs.setdefault((model_name, config), []).append(row)
                print(f"  [{repeat + 1}/{args.repeats}] {model_name:<4} {config:<16} "
                      f"{row['epoch_s'] * 1000:8.1f} ms/epoch  first {row['first_epoch_s']:6.2f} s  "
                      f"peak RSS {row['peak_rss_mib']:7.1f} MiB  load {os.getloadavg()[0]:.2f}",
                      flush=True)
    rows = [_combine(runs[(m, c)]) for m in model_names for c in configs]
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    if set(configs) == set(CONFIGS):
        _report(rows, model_names, args, epochs)
    else:
        for row in rows:
            print(f"{row['model']:<5} {row['config']:<16} {row['epoch_s'] * 1000:9.1f} ms/epoch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
