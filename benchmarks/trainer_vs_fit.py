"""Trainer vs model.fit: time per epoch and peak memory, same model, data, seed and batch size.

Each configuration runs in its own subprocess (so peak RSS is its own) on MNIST-1D
(4000 x 40), for an MLP and a 1-D CNN from ``keras_trainkit.models``:

* ``fit``            model.fit at its defaults (jit_compile="auto": no XLA on CPU)
* ``fit-best``       model.fit(jit_compile=True, steps_per_execution=k)
* ``trainer``        Trainer at its defaults (steps_per_execution=1, jit_compile="auto")
* ``trainer-spe``    Trainer(steps_per_execution=k)
* ``trainer-best``   Trainer(jit_compile=True, steps_per_execution=k)

Time per epoch is the median over the epochs after the first (the first holds tracing
and XLA compilation). RSS growth is the resident memory after the last epoch minus
after epoch 2. Prints a table and the ratios Trainer / fit.

Run: ``python benchmarks/trainer_vs_fit.py`` (``--epochs 20 --k 16``; ``--quick`` for a
short check).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CONFIGS = ("fit", "fit-best", "trainer", "trainer-spe", "trainer-best")


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(model_name: str, config: str, epochs: int, k: int, batch_size: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from keras_trainkit import datasets, models
    from keras_trainkit.training import Trainer

    (x, y), _ = datasets.load_mnist1d()
    keras.utils.set_random_seed(0)
    model = models.build(model_name, (40,), 10)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    times, rss = [], []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)
            rss.append(_rss_mib())

    common = dict(batch_size=batch_size, epochs=epochs, callbacks=[Clock()], verbose=0)
    if config.startswith("fit"):
        extra = dict(jit_compile=True, steps_per_execution=k) if config == "fit-best" else {}
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"],
                      **extra)
        model.fit(x, y, shuffle=True, **common)
    else:
        extra = {"trainer-spe": dict(steps_per_execution=k),
                 "trainer-best": dict(jit_compile=True, steps_per_execution=k)}.get(config, {})
        trainer = Trainer(model, keras.optimizers.Adam(1e-3), loss, ["accuracy"], seed=0, **extra)
        trainer.fit(x, y, **common)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": model_name, "config": config, "epoch_s": float(np.median(times[1:])),
            "first_epoch_s": times[0], "peak_rss_mib": peak,
            "rss_growth_mib": rss[-1] - rss[min(1, len(rss) - 1)]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=16, help="steps per execution")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--quick", action="store_true", help="3 epochs, for a smoke check")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], epochs, args.k, args.batch_size)))
        return 0
    rows = []
    for model_name in args.models.split(","):
        for config in CONFIGS:
            command = [sys.executable, __file__, "--one", model_name, config, "--epochs",
                       str(epochs), "--k", str(args.k), "--batch-size", str(args.batch_size)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"{model_name:<4} {config:<13} {row['epoch_s'] * 1000:8.1f} ms/epoch  "
                  f"first {row['first_epoch_s']:6.2f} s  peak RSS {row['peak_rss_mib']:7.1f} MiB  "
                  f"RSS growth {row['rss_growth_mib']:+6.1f} MiB", flush=True)
    print("\nratios (Trainer / fit; < 1 means the Trainer is faster or smaller)")
    for model_name in args.models.split(","):
        by = {r["config"]: r for r in rows if r["model"] == model_name}
        for ours in ("trainer", "trainer-spe", "trainer-best"):
            print(f"{model_name:<4} {ours:<13} time vs fit {by[ours]['epoch_s'] / by['fit']['epoch_s']:.2f}x"
                  f"  vs fit-best {by[ours]['epoch_s'] / by['fit-best']['epoch_s']:.2f}x"
                  f"  peak RSS vs fit {by[ours]['peak_rss_mib'] / by['fit']['peak_rss_mib']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
