"""``trainkit lr-find``: run the learning-rate range test on an embedded data set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "learning-rate range test (Smith 2017): print the suggested learning rate and plot the sweep"
OUTPUTS = ("lr_find.png", "lr_find.json")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="mnist1d", choices=["mnist1d", "digits"],
                        help="embedded data set (default: mnist1d)")
    parser.add_argument("--model", default="cnn", choices=["cnn", "mlp"],
                        help="reference architecture from keras_trainkit.models (default: cnn)")
    parser.add_argument("--optimizer", default="adam",
                        help="optimizer name for keras_trainkit.optimizers.get (default: adam)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    parser.add_argument("--start-lr", type=float, default=1e-7, help="first learning rate (default: 1e-7)")
    parser.add_argument("--end-lr", type=float, default=10.0, help="last learning rate (default: 10)")
    parser.add_argument("--num-steps", type=int, default=100, help="learning rates tried (default: 100)")
    parser.add_argument("--mode", default="exponential", choices=["exponential", "linear"],
                        help="sweep shape (default: exponential)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and shuffling (default: 0)")
    parser.add_argument("--output", default=".",
                        help="folder for lr_find.png and lr_find.json, created with any missing "
                             "parents (default: current folder)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an lr_find.png or lr_find.json already in --output "
                             "(refused without it)")


def check(args: argparse.Namespace) -> None:
    """The sweep's arguments and the output folder, before TensorFlow is imported. The folder
    is created in :func:`run` once ``--optimizer`` (which needs TensorFlow) passed too, so a
    refused command leaves no empty folder behind."""
    from keras_trainkit.commands._paths import output_folder
    from keras_trainkit.utils.validation import check_number, check_positive

    check_positive("--start-lr", args.start_lr)
    check_number("--end-lr", args.end_lr, minimum=args.start_lr, min_inclusive=False,
                 hint="The sweep must go from `--start-lr` up to `--end-lr`")
    check_number("--num-steps", args.num_steps, minimum=2, integer=True)
    check_positive("--batch-size", args.batch_size, integer=True)
    check_number("--seed", args.seed, minimum=0, maximum=2**32 - 1, integer=True)
    args.output = str(output_folder(args.output, "--output", "lr-find", create=False))  # "~" expanded
    found = [name for name in OUTPUTS if (Path(args.output) / name).exists()]
    if found and not args.overwrite:  # an earlier sweep's, or the user's own
        raise ValueError(f"Argument `--output` must name a folder without {' or '.join(OUTPUTS)}, or add "
                         f"--overwrite to replace them: it holds {', '.join(found)}. "
                         f"Received: output={args.output!r}")


def _optimizer(name: str):
    """The optimizer ``--optimizer`` names, or an error that names the flag."""
    from keras_trainkit import optimizers

    try:
        return optimizers.get(name)
    except (ValueError, TypeError) as error:
        raise ValueError(f"Argument `--optimizer` must name an optimizer that "
                         f"keras_trainkit.optimizers.get builds on its own (a wrapper such as "
                         f"lookahead or sam needs an inner optimizer; {error}). "
                         f"Received: --optimizer={name!r}") from None


def run(args: argparse.Namespace) -> int:
    import keras

    from keras_trainkit import datasets, models
    from keras_trainkit.commands._paths import output_folder
    from keras_trainkit.diagnostics import lr_find
    from keras_trainkit.diagnostics.lr_finder import SUGGESTION_RULES

    optimizer = _optimizer(args.optimizer)  # before the folder, the data and the model
    output_folder(args.output, "--output", "lr-find")
    (x, y), _ = datasets.load(args.dataset)
    keras.utils.set_random_seed(args.seed)
    model = models.build(args.model, x.shape[1:], int(y.max()) + 1)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    result = lr_find(
        model,
        (x, y),
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        num_steps=args.num_steps,
        mode=args.mode,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    output = Path(args.output)
    title = f"lr-find: {args.model} on {args.dataset}, {args.optimizer}, batch {args.batch_size}"
    plot_path = result.plot(output / "lr_find.png", title=title)
    summary = {"dataset": args.dataset, "model": args.model, "optimizer": args.optimizer,
               "batch_size": args.batch_size, **result.to_dict()}
    (output / "lr_find.json").write_text(json.dumps(summary, indent=2))

    print(f"suggested learning rate (valley): {result.suggestion:.3g}  ({SUGGESTION_RULES['valley']})")
    for name in ("steep", "minimum"):
        print(f"  {name:<8} {result.suggestions[name]:.3g}  ({SUGGESTION_RULES[name]})")
    print(f"lowest smoothed loss at learning rate {result.lowest_loss_learning_rate:.3g}")
    state = "diverged" if result.diverged else "did not diverge"
    print(f"steps: {len(result.learning_rates)} of {args.num_steps} ({state})")
    print(f"plot: {plot_path}")
    return 0
