"""Outcome benchmark for the issue-19 optimizers, in the spirit of AlgoPerf, on embedded MNIST-1D.

For each model (a small MLP and a small 1-D CNN with BatchNorm) and each
optimizer, at a fixed budget of epochs, with the same training pipeline for all
(the `trainkit demo` pipeline: the Trainer, batches of 128 with a random
circular shift of up to 3 positions, gradients clipped to global norm 1; a
fixed split with 400 validation examples; the 1000 test examples):

* **defaults**: the optimizer's documented defaults, its learning rate behind a
  linear warm-up over the first 5 % of the updates and constant after (no
  decay), 3 training seeds;
* **best of a 5-point sweep**: the default learning rate times 0.1, 0.316, 1,
  3.16 and 10, each trained with seed 0, the best by final validation accuracy
  (never the test set) then trained with the other seeds too;
* the reference **warm-up + cosine AdamW**: the `trainkit demo` recipe
  (``commands.demo._optimizer``: its learning rate and weight decay, 5 %
  warm-up, cosine to 0 over the budget), 3 seeds; with ``--sweep-cosine``
  also the best of the same sweep around the recipe's learning rate.

Printed per (model, optimizer, setting): the learning rate, the mean and
standard error over seeds of the final test accuracy, the epochs to the
target validation accuracy (median over seeds; ``-`` when a seed never reached
it) and the seconds to it (training and validation wall time, on a shared
machine: compare within one run only). Then whether ScheduleFree (no decay)
reached the cosine AdamW's final test accuracy within one standard error.

ScheduleFree and Keras's ScheduleFreeAdamW are evaluated at their averaged
weights ``x`` (the Trainer swaps them in, BatchNorm statistics recomputed);
every other optimizer at its weights.

Run:    python benchmarks/optimizer_outcomes.py              (the recorded run)
Smoke:  python benchmarks/optimizer_outcomes.py --quick      (a minute or two)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from keras_trainkit import models, schedules  # noqa: E402
from keras_trainkit import optimizers as tk  # noqa: E402
from keras_trainkit.commands import demo  # noqa: E402
from keras_trainkit.optimizers.transforms import ClipByGlobalNorm  # noqa: E402
from keras_trainkit.training import Trainer  # noqa: E402

BATCH_SIZE = 128
SHIFT = 3
SPLIT_SEED = 0
WARMUP_FRACTION = demo.WARMUP_FRACTION
SWEEP_FACTORS = (0.1, 10 ** -0.5, 1.0, 10 ** 0.5, 10.0)

#: Small models, so the whole benchmark runs on two shared CPU cores.
MODELS = {
    "mlp": dict(depth=2, width=128, dropout=0.1),
    "cnn": dict(filters=(16, 32, 32), kernel_size=5, dense_units=64),
}
#: Validation accuracy to reach, set from one pilot run of the cosine AdamW recipe (12 epochs,
#: seed 0: it reached 0.45 (MLP) after 5 epochs and 0.85 (CNN) after 7).
TARGETS = {"mlp": 0.45, "cnn": 0.85}


def _warm(learning_rate, warmup_steps):
    return schedules.Warmup(learning_rate, warmup_steps=warmup_steps)


#: name -> (documented default learning rate, factory(learning_rate, warmup_steps)).
OPTIMIZERS = {
    "AdamW": (1e-3, lambda lr, w: keras.optimizers.AdamW(_warm(lr, w))),
    "ScheduleFree(AdamW b1=0)": (1e-3, lambda lr, w: tk.ScheduleFree(keras.optimizers.AdamW(_warm(lr, w),
                                                                                            beta_1=0.0))),
    "keras ScheduleFreeAdamW": (2.5e-3, lambda lr, w: keras.optimizers.ScheduleFreeAdamW(lr, warmup_steps=w)),
    "ADOPT": (1e-3, lambda lr, w: tk.ADOPT(_warm(lr, w))),
    "AdEMAMix": (1e-3, lambda lr, w: tk.AdEMAMix(_warm(lr, w))),
    "MARS": (3e-3, lambda lr, w: tk.MARS(_warm(lr, w))),
    "Muon": (2e-2, lambda lr, w: tk.Muon(_warm(lr, w))),
    "SOAP": (3e-3, lambda lr, w: tk.SOAP(_warm(lr, w))),
    "Cautious(AdamW)": (1e-3, lambda lr, w: tk.Cautious(keras.optimizers.AdamW(_warm(lr, w)))),
}
COSINE = "AdamW warm-up+cosine (demo recipe)"


class EpochClock(keras.callbacks.Callback):
    """Seconds since ``on_train_begin`` at each epoch end (after validation)."""

    def on_train_begin(self, logs=None):
        self.start, self.seconds = time.perf_counter(), []

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def cosine_adamw(model_name, epochs, steps_per_epoch, learning_rate=None):
    """The demo recipe's warm-up + cosine AdamW for ``epochs`` (at ``learning_rate`` instead of its own)."""
    recipe = dict(demo.RECIPES["mnist1d"][model_name], epochs=epochs)
    if learning_rate is not None:
        recipe["learning_rate"] = learning_rate
    return recipe["learning_rate"], demo._optimizer(recipe, steps_per_epoch)


def default_learning_rate(model_name, name):
    if name == COSINE:
        return demo.RECIPES["mnist1d"][model_name]["learning_rate"]
    return OPTIMIZERS[name][0]


def train(model_name, optimizer_name, learning_rate, seed, epochs, data):
    """One run; returns its learning rate, per-epoch validation accuracy and clock, test accuracy."""
    (x, y), (x_val, y_val), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    model = models.build(model_name, x.shape[1:], 10, **MODELS[model_name])
    steps_per_epoch = math.ceil(len(x) / BATCH_SIZE)
    if optimizer_name == COSINE:
        learning_rate, optimizer = cosine_adamw(model_name, epochs, steps_per_epoch, learning_rate)
    else:
        warmup = max(1, int(WARMUP_FRACTION * epochs * steps_per_epoch))
        optimizer = OPTIMIZERS[optimizer_name][1](learning_rate, warmup)
    trainer = Trainer(model, optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      ["accuracy"], gradient_transforms=[ClipByGlobalNorm(demo.CLIP_NORM)],
                      steps_per_execution=8, seed=seed)
    clock = EpochClock()
    history = trainer.fit(demo.training_dataset(x, y, BATCH_SIZE, SHIFT, seed), epochs=epochs,
                          validation_data=(x_val, y_val), callbacks=[clock], verbose=0)
    test = trainer.evaluate(x_test, y_test, batch_size=512, verbose=0, return_dict=True)
    return {"learning_rate": learning_rate, "seed": seed, "val_accuracy": history.history["val_accuracy"],
            "seconds": clock.seconds, "test_accuracy": float(test["accuracy"])}


def to_target(run, target):
    """(epochs, seconds) to the first epoch end with validation accuracy >= target, or (None, None)."""
    for epoch, accuracy in enumerate(run["val_accuracy"]):
        if accuracy >= target:
            return epoch + 1, run["seconds"][epoch]
    return None, None


def summarize(runs, target):
    tests = [r["test_accuracy"] for r in runs]
    reached = [to_target(r, target) for r in runs]
    hit = [e for e, _ in reached if e is not None]
    sem = statistics.stdev(tests) / math.sqrt(len(tests)) if len(tests) > 1 else float("nan")
    return {"learning_rate": runs[0]["learning_rate"], "test_mean": statistics.mean(tests), "test_sem": sem,
            "reached": f"{len(hit)}/{len(runs)}",
            "epochs_to_target": statistics.median(hit) if len(hit) == len(runs) else None,
            "seconds_to_target": (statistics.median(s for _, s in reached) if len(hit) == len(runs) else None),
            "tests": tests}


def benchmark_optimizer(model_name, name, seeds, factors, epochs, data, log):
    """Defaults over ``seeds``, and the best of the sweep (by seed 0's final validation accuracy) over ``seeds``."""
    default_lr = default_learning_rate(model_name, name)
    sweep = {}
    for factor in factors:
        lr = default_lr * factor
        sweep[lr] = train(model_name, name, lr, seeds[0], epochs, data)
        log(f"  {model_name} {name} lr={lr:.3g} seed={seeds[0]}: val {sweep[lr]['val_accuracy'][-1]:.3f} "
            f"test {sweep[lr]['test_accuracy']:.3f}")
    best_lr = max(sweep, key=lambda lr: sweep[lr]["val_accuracy"][-1])
    default_runs = [sweep[default_lr] if default_lr in sweep else train(model_name, name, default_lr, seeds[0],
                                                                         epochs, data)]
    default_runs += [train(model_name, name, default_lr, s, epochs, data) for s in seeds[1:]]
    best_runs = ([sweep[best_lr]] + [r for r in default_runs[1:]] if best_lr == default_lr else
                 [sweep[best_lr]] + [train(model_name, name, best_lr, s, epochs, data) for s in seeds[1:]])
    return {"defaults": default_runs, "best of sweep": best_runs, "sweep_val": {
        f"{lr:.3g}": r["val_accuracy"][-1] for lr, r in sweep.items()}}


def print_table(model_name, rows, target):
    print(f"\n{model_name.upper()}: final test accuracy (mean +- s.e. over seeds), epochs and seconds to "
          f"validation accuracy {target}")
    print(f"{'optimizer':<36} {'setting':<14} {'lr':>8} {'test acc':>15} {'reached':>7} {'epochs':>6} "
          f"{'seconds':>7}")
    for (name, setting), s in rows.items():
        epochs = "-" if s["epochs_to_target"] is None else f"{s['epochs_to_target']:g}"
        seconds = "-" if s["seconds_to_target"] is None else f"{s['seconds_to_target']:.1f}"
        print(f"{name:<36} {setting:<14} {s['learning_rate']:>8.3g} {s['test_mean']:>8.4f} +- "
              f"{s['test_sem']:.4f} {s['reached']:>7} {epochs:>6} {seconds:>7}")


def verdict(rows, model_name):
    cosine = rows[(COSINE, "recipe")]
    lines = []
    for setting in ("defaults", "best of sweep"):
        sf = rows[("ScheduleFree(AdamW b1=0)", setting)]
        gap = cosine["test_mean"] - sf["test_mean"]
        within = gap <= max(cosine["test_sem"], sf["test_sem"])
        lines.append(f"{model_name}: ScheduleFree ({setting}) {sf['test_mean']:.4f} vs cosine AdamW "
                     f"{cosine['test_mean']:.4f}: gap {gap:+.4f}, one s.e. = "
                     f"{max(cosine['test_sem'], sf['test_sem']):.4f} -> "
                     f"{'within' if within else 'NOT within'} one standard error")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 epochs, 1 seed, 1 sweep point, 3 optimizers, MLP only")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                        help="comma-separated names from OPTIMIZERS (default: all; '' for none)")
    parser.add_argument("--sweep-cosine", action="store_true",
                        help="also sweep the cosine AdamW reference's learning rate (its recipe's times the "
                             "same factors; best by validation, 3 seeds)")
    parser.add_argument("--json", default=None, help="also write every run to this JSON file")
    args = parser.parse_args()
    names = [n for n in args.optimizers.split(",") if n]
    factors, model_names = SWEEP_FACTORS, args.models.split(",")
    if args.quick:
        args.epochs, args.seeds, factors, model_names = 2, 1, (1.0,), ["mlp"]
        names = ["AdamW", "ScheduleFree(AdamW b1=0)", "Muon"]
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or args.epochs < 1 or args.seeds < 1:
        raise ValueError(f"Arguments must name known optimizers, epochs >= 1 and seeds >= 1. Received: "
                         f"unknown={unknown}, epochs={args.epochs}, seeds={args.seeds}")
    seeds = list(range(args.seeds))
    data = demo.split("mnist1d", SPLIT_SEED)
    start = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - start:6.0f} s]{message}", flush=True)

    everything, verdicts = {}, []
    for model_name in model_names:
        rows, raw = {}, {}
        cosine_runs = [train(model_name, COSINE, None, s, args.epochs, data) for s in seeds]
        log(f"  {model_name} {COSINE}: test {[round(r['test_accuracy'], 4) for r in cosine_runs]}")
        rows[(COSINE, "recipe")] = summarize(cosine_runs, TARGETS[model_name])
        raw[COSINE] = cosine_runs
        if args.sweep_cosine:
            result = benchmark_optimizer(model_name, COSINE, seeds, factors, args.epochs, data, log)
            rows[(COSINE, "best of sweep")] = summarize(result["best of sweep"], TARGETS[model_name])
            raw[COSINE + " sweep"] = result
        for name in names:
            result = benchmark_optimizer(model_name, name, seeds, factors, args.epochs, data, log)
            for setting in ("defaults", "best of sweep"):
                rows[(name, setting)] = summarize(result[setting], TARGETS[model_name])
            raw[name] = result
        print_table(model_name, rows, TARGETS[model_name])
        if "ScheduleFree(AdamW b1=0)" in names:
            verdicts += verdict(rows, model_name)
        everything[model_name] = {"rows": {f"{n} | {s}": v for (n, s), v in rows.items()}, "runs": raw}
    print()
    for line in verdicts:
        print(line)
    print(f"\nepochs={args.epochs} seeds={seeds} sweep factors={[round(f, 3) for f in factors]} "
          f"targets={TARGETS} total {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1)


if __name__ == "__main__":
    main()
