"""``trainkit demo``: the main job. Train an MLP and a CNN with the Trainer and compare.

With no arguments it trains, on embedded MNIST-1D (Greydanus 2020), the
reference MLP and 1-D CNN of ``keras_trainkit.models`` with the
:class:`~keras_trainkit.training.Trainer`, AdamW, a linear warm-up into cosine
annealing, gradient clipping and early stopping on a held-out validation split
(best weights restored); clipping is the Trainer's ``ClipByGlobalNorm``
gradient transform. It prints progress, then the test accuracy of each
model beside the MNIST-1D paper's baselines, and writes TensorBoard logs, a
learning-curve PNG and ``results.json`` to the output directory it names.

The Trainer is TensorFlow's ``GradientTape`` loop. On the JAX and PyTorch
backends the demo says so in one line and trains with ``model.fit`` on the
same recipe: the same AdamW and schedule, the same ``ClipByGlobalNorm`` run by
the same gradient chain (in a ``TransformedOptimizer``), the same callbacks.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path

HELP = ("train an MLP and a CNN on embedded MNIST-1D (or digits) with the Trainer "
        "(model.fit on JAX/PyTorch) and compare")

#: Test accuracies published in the MNIST-1D paper (Greydanus 2020, table 1).
PAPER_BASELINES = {"logistic regression": 0.32, "mlp": 0.68, "cnn": 0.94}

#: Per data set and model: epochs, batch size, peak learning rate, weight decay,
#: augmentation (random circular shift of the 1-D signal by up to ``shift``
#: positions), model-builder arguments. Tuned on 2 CPU cores (docs/custom_loop.md).
RECIPES = {
    "mnist1d": {
        "mlp": dict(epochs=40, batch_size=128, learning_rate=2e-3, weight_decay=5e-2, shift=3,
                    model=dict(depth=3, width=512, dropout=0.1)),
        "cnn": dict(epochs=30, batch_size=128, learning_rate=4e-3, weight_decay=1e-2, shift=3,
                    model=dict(filters=(64, 128, 128), kernel_size=5, dense_units=128)),
    },
    "digits": {
        "mlp": dict(epochs=40, batch_size=64, learning_rate=2e-3, weight_decay=1e-2, shift=0,
                    model=dict(depth=2, width=256, dropout=0.1)),
        "cnn": dict(epochs=30, batch_size=64, learning_rate=3e-3, weight_decay=1e-2, shift=0,
                    model=dict(filters=(32, 64), kernel_size=3, dense_units=64)),
    },
}

WARMUP_FRACTION = 0.05
CLIP_NORM = 1.0
VALIDATION_FRACTION = 0.1


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=sorted(RECIPES), default="mnist1d",
                        help="embedded data set (default: mnist1d)")
    parser.add_argument("--models", default="mlp,cnn",
                        help="comma-separated models to train (default: mlp,cnn)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per model (default: the tuned recipe's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--output", default=None,
                        help="output directory, created with any missing parents "
                             "(default: ./trainkit-demo/<dataset>-<time>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier demo's results.json, learning_curves.png and "
                             "TensorBoard logs in --output (refused without it)")
    parser.add_argument("--subset", type=int, default=None,
                        help="train on the first N training examples only (quick checks)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                        help="progress: 1 bar, 2 one line per epoch, 0 none "
                             "(default: 1 on a terminal, else 2)")


def _recipe(dataset: str, name: str, epochs: int | None) -> dict:
    recipe = dict(RECIPES[dataset][name])
    if epochs is not None:
        recipe["epochs"] = epochs
    return recipe


def _optimizer(recipe: dict, steps_per_epoch: int):
    import keras

    from keras_trainkit import schedules

    total = max(1, recipe["epochs"] * steps_per_epoch)
    warmup = max(1, int(WARMUP_FRACTION * total))
    schedule = schedules.Warmup(
        schedules.CosineAnnealing(recipe["learning_rate"], decay_steps=max(1, total - warmup)),
        warmup_steps=warmup,
    )
    return keras.optimizers.AdamW(schedule, weight_decay=recipe["weight_decay"])


def training_dataset(x, y, batch_size: int, shift: int, seed: int):
    """Shuffled batches of ``(x, y)``; signals get a random circular shift in ``[-shift, shift]``."""
    import tensorflow as tf

    from keras_trainkit.datasets import random_shift

    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(batch_size)
    return random_shift(data, shift, seed).prefetch(tf.data.AUTOTUNE)


def uses_trainer() -> bool:
    """Whether the demo trains with the Trainer (TensorFlow backend) or with ``model.fit``."""
    import keras

    return keras.backend.backend() == "tensorflow"


FALLBACK_NOTE = (
    "the Trainer is TensorFlow's GradientTape loop and the Keras backend is {backend!r}: training "
    "with model.fit on the same recipe (AdamW, warm-up + cosine, ClipByGlobalNorm through "
    "TransformedOptimizer, early stopping)"
)


def _runner(model, recipe, steps_per_epoch: int, seed: int):
    """The Trainer on TensorFlow, else the model compiled for ``model.fit`` with the same recipe.

    Either has ``fit(...)`` and ``evaluate(...)`` as the demo calls them.
    """
    import keras

    from keras_trainkit.optimizers import TransformedOptimizer
    from keras_trainkit.optimizers.transforms import ClipByGlobalNorm

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = _optimizer(recipe, steps_per_epoch)
    if not uses_trainer():
        clipped = TransformedOptimizer(optimizer, [ClipByGlobalNorm(CLIP_NORM)])
        # Several steps per compiled call pay off under jax.jit; PyTorch's loop is eager.
        steps = 8 if keras.backend.backend() == "jax" else 1
        model.compile(optimizer=clipped, loss=loss, metrics=["accuracy"], steps_per_execution=steps)
        return model
    from keras_trainkit.training import Trainer

    return Trainer(model, optimizer, loss, ["accuracy"], gradient_transforms=[ClipByGlobalNorm(CLIP_NORM)],
                   steps_per_execution=8, seed=seed)


def train_one(name, dataset, data, recipe, seed, output: Path, verbose):
    """Train one model of the demo; returns its results (accuracy, epochs, time)
    and the trained model (best-epoch weights)."""
    import keras

    from keras_trainkit import callbacks as tk_callbacks
    from keras_trainkit import models

    (x, y), (x_val, y_val), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    model = models.build(name, x.shape[1:], 10, **recipe["model"])
    steps_per_epoch = -(-len(x) // recipe["batch_size"])
    trainer = _runner(model, recipe, steps_per_epoch, seed)
    # Early stopping watches the second half only: the cosine schedule does much of
    # its work late, and a 400-example validation accuracy is noisy early on.
    stopper = tk_callbacks.EarlyStopping(monitor="val_accuracy", patience=max(5, recipe["epochs"] // 4),
                                         start_from_epoch=recipe["epochs"] // 2,
                                         restore_best_weights=True)
    board = keras.callbacks.TensorBoard(str(output / "tensorboard" / name), write_graph=False)
    start = time.perf_counter()
    history = trainer.fit(training_dataset(x, y, recipe["batch_size"], recipe["shift"], seed),
                          epochs=recipe["epochs"], validation_data=(x_val, y_val),
                          callbacks=[stopper, board], verbose=verbose,
                          **({} if uses_trainer() else {"shuffle": False}))  # the batches are shuffled
    seconds = time.perf_counter() - start
    test = trainer.evaluate(x_test, y_test, batch_size=512, verbose=0, return_dict=True)
    result = {
        "model": name,
        "parameters": int(model.count_params()),
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "epochs_run": len(history.epoch),
        "best_epoch": None if stopper.best_epoch is None else int(stopper.best_epoch) + 1,
        "seconds": round(seconds, 1),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe.items()
                   if k != "model"} | {"model": {k: (list(v) if isinstance(v, tuple) else v)
                                                 for k, v in recipe["model"].items()}},
    }
    return result, model


def plot_curves(results: list[dict], path: Path, title: str) -> None:
    """Write the learning curves (loss and accuracy, train and validation) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for result in results:
        h = result["history"]
        epochs = range(1, len(h["loss"]) + 1)
        line = ax_loss.plot(epochs, h["loss"], label=f"{result['model']} train")[0]
        ax_loss.plot(epochs, h["val_loss"], "--", color=line.get_color(),
                     label=f"{result['model']} validation")
        ax_acc.plot(epochs, h["accuracy"], color=line.get_color(), label=f"{result['model']} train")
        ax_acc.plot(epochs, h["val_accuracy"], "--", color=line.get_color(),
                    label=f"{result['model']} validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for axis in (ax_loss, ax_acc):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def split(dataset: str, seed: int, subset: int | None = None):
    """Training, validation and test arrays of an embedded data set: a random
    ``VALIDATION_FRACTION`` of the training set (drawn by ``seed``) is held out
    for validation. ``subset`` keeps only the first training examples."""
    import numpy as np

    from keras_trainkit import datasets

    (x, y), (x_test, y_test) = datasets.load(dataset)
    if subset is not None:
        x, y = x[:subset], y[:subset]
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(VALIDATION_FRACTION * len(x))))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val]), (x_test, y_test)


def _new_default_output(dataset: str) -> Path:
    """``trainkit-demo/<dataset>-<time>``, or with ``-2``, ``-3``, ... added where a demo
    started in the same second already has that folder (it is never written over)."""
    stem = Path("trainkit-demo") / f"{dataset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    folder, number = stem, 1
    while folder.exists():
        number += 1
        folder = stem.with_name(f"{stem.name}-{number}")
    return folder


def earlier_outputs(output: Path) -> list[Path]:
    """The files and folders an earlier demo wrote in ``output`` (none for a new folder)."""
    models = sorted({name for recipes in RECIPES.values() for name in recipes})
    candidates = [output / "results.json", output / "learning_curves.png",
                  *(output / "tensorboard" / name for name in models)]
    return [path for path in candidates if path.exists()]


def check(args: argparse.Namespace) -> None:
    """The argument checks and the output folder (created if missing), before any work."""
    from keras_trainkit.commands._paths import output_folder

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names or any(name not in RECIPES[args.dataset] for name in names):
        raise ValueError(f"Argument `--models` must list names among mlp, cnn. Received: "
                         f"--models={args.models}")
    if len(set(names)) < len(names):  # each model's outputs would overwrite the other's
        raise ValueError(f"Argument `--models` must name each model once. Received: "
                         f"--models={args.models}")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"Argument `--epochs` must be >= 1. Received: --epochs={args.epochs}")
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"Argument `--seed` must be in [0, 2**32). Received: --seed={args.seed}")
    if args.subset is not None and args.subset < 10:
        raise ValueError(f"Argument `--subset` must be >= 10. Received: --subset={args.subset}")
    if args.output is None:
        args.output = str(_new_default_output(args.dataset))
    folder = Path(args.output).expanduser()
    earlier = earlier_outputs(folder)
    if earlier and not args.overwrite:  # its results.json would be lost, its curves mixed with ours
        raise ValueError(
            f"Argument `--output` must name a folder without an earlier demo's outputs, or add "
            f"--overwrite to replace them: it holds {', '.join(str(p.relative_to(folder)) for p in earlier)} "
            f"(TensorBoard would show both runs' curves as one). Received: --output={args.output}")
    args.output = str(output_folder(args.output, "--output", "demo"))  # "~" expanded


def _remove_earlier_outputs(output: Path) -> None:
    """With ``--overwrite``: delete an earlier demo's outputs (only the demo's own names)."""
    import shutil

    for path in earlier_outputs(output):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    board = output / "tensorboard"
    if board.is_dir() and not any(board.iterdir()):
        board.rmdir()


def run(args: argparse.Namespace) -> int:
    import sys

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    verbose = args.verbose if args.verbose is not None else (1 if sys.stdout.isatty() else 2)
    output = Path(args.output)
    if args.overwrite:
        _remove_earlier_outputs(output)
    print(f"trainkit demo: {args.dataset}, models {', '.join(names)}, seed {args.seed}")
    print(f"output directory: {output.resolve()}")
    data = split(args.dataset, args.seed, args.subset)
    if not uses_trainer():
        import keras

        print("trainkit demo: " + FALLBACK_NOTE.format(backend=keras.backend.backend()))
    print(f"train {len(data[0][0])}, validation {len(data[1][0])}, test {len(data[2][0])} examples\n")
    results = []
    total = time.perf_counter()
    for name in names:
        recipe = _recipe(args.dataset, name, args.epochs)
        shift = f", random shifts +-{recipe['shift']}" if recipe["shift"] else ""
        print(f"== {name}: AdamW (peak lr {recipe['learning_rate']}, weight decay "
              f"{recipe['weight_decay']}), warm-up + cosine, global-norm clipping {CLIP_NORM}, "
              f"early stopping, up to {recipe['epochs']} epochs, batch {recipe['batch_size']}{shift}")
        results.append(train_one(name, args.dataset, data, recipe, args.seed, output, verbose)[0])
    total = time.perf_counter() - total

    print(f"\nTest accuracy on {args.dataset} ({len(data[2][0])} examples):")
    print(f"  {'model':<22} {'ours':>7} {'paper':>7} {'epochs':>7} {'time':>7}")
    for result in results:
        paper = PAPER_BASELINES.get(result["model"]) if args.dataset == "mnist1d" else None
        paper_text = f"{paper:.0%}" if paper is not None else "-"
        print(f"  {result['model']:<22} {result['test_accuracy']:>7.1%} {paper_text:>7} "
              f"{result['epochs_run']:>7} {result['seconds']:>6.0f}s")
    if args.dataset == "mnist1d":
        print(f"  {'logistic regression':<22} {'-':>7} {PAPER_BASELINES['logistic regression']:>7.0%}")
        print("  (paper: Greydanus 2020, 'Scaling down deep learning', MNIST-1D baselines)")
    png = output / "learning_curves.png"
    plot_curves(results, png, f"trainkit demo: {args.dataset}, seed {args.seed}")
    summary = {"dataset": args.dataset, "seed": args.seed, "seconds": round(total, 1),
               "paper_baselines": PAPER_BASELINES if args.dataset == "mnist1d" else None,
               "results": results}
    (output / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {png}")
    print(f"wrote {output / 'results.json'}")
    print(f"TensorBoard: tensorboard --logdir {output / 'tensorboard'}")
    return 0
