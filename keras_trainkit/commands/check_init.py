"""``trainkit check-init``: one forward/backward pass of a fresh model, per-layer statistics and warnings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "check an initialization: per-layer activation/gradient statistics, dead ReLUs and warnings"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="mnist1d", choices=["mnist1d", "digits"],
                        help="embedded data set (default: mnist1d)")
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn"],
                        help="reference architecture from keras_trainkit.models (default: mlp)")
    parser.add_argument("--depth", type=int, default=10,
                        help="hidden layers of the mlp / convolution blocks of the cnn (default: 10)")
    parser.add_argument("--width", type=int, default=128,
                        help="units per hidden layer / filters per block (default: 128)")
    parser.add_argument("--activation", default="relu", help="hidden activation (default: relu)")
    parser.add_argument("--initializer", default="he_normal",
                        help="kernel initializer for keras_trainkit.initializers.get (e.g. he_normal, "
                             "glorot_uniform, orthogonal, geometric_fan), or 'lsuv' (default: he_normal)")
    parser.add_argument("--batch-size", type=int, default=256, help="examples in the batch (default: 256)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights (default: 0)")
    parser.add_argument("--plot", default=None,
                        help="write the per-layer plot to this PNG file (its folder is created "
                             "with any missing parents)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when there are warnings")


def check(args: argparse.Namespace) -> None:
    """The sizes and the plot's path, before TensorFlow is imported. The plot's folder is
    created in :func:`run` once ``--initializer`` and ``--activation`` (which need
    TensorFlow) passed too, so a refused command leaves no empty folder behind."""
    from keras_trainkit.commands._paths import output_file
    from keras_trainkit.utils.validation import check_number, check_positive

    check_positive("--depth", args.depth, integer=True)
    check_positive("--width", args.width, integer=True)
    check_positive("--batch-size", args.batch_size, integer=True)
    if args.initializer.lower() == "lsuv" and args.batch_size < 2:  # its variances need 2
        raise ValueError("Argument `--batch-size` must be >= 2 with --initializer lsuv (it scales "
                         "each layer by the variance of its outputs over the batch). "
                         f"Received: --batch-size={args.batch_size}")
    check_number("--seed", args.seed, minimum=0, maximum=2**32 - 1, integer=True)
    if args.plot is not None:
        args.plot = str(output_file(args.plot, "--plot", "check-init", create=False))  # "~" expanded


def _named(flag: str, value: str, what: str, get):
    """``get(value)``, or an error that names the flag (before the data and the model)."""
    try:
        return get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"Argument `{flag}` must name {what} ({error}). "
                         f"Received: {flag}={value!r}") from None


def run(args: argparse.Namespace) -> int:
    import keras

    from keras_trainkit import datasets, initializers, models
    from keras_trainkit.commands._paths import output_file
    from keras_trainkit.diagnostics import check_initialization
    lsuv = args.initializer.lower() == "lsuv"
    initializer = _named("--initializer", args.initializer,
                         "an initializer that keras_trainkit.initializers.get knows, or lsuv",
                         lambda name: initializers.get("orthogonal" if lsuv else name))
    _named("--activation", args.activation, "a Keras activation", keras.activations.get)
    if args.plot is not None:
        output_file(args.plot, "--plot", "check-init")  # its folder, once the names passed
    (x, y), _ = datasets.load(args.dataset)
    num_classes = int(y.max()) + 1  # the data set's, whatever labels the batch holds
    x, y = x[: args.batch_size], y[: args.batch_size]
    keras.utils.set_random_seed(args.seed)
    if args.model == "mlp":
        extra = {"depth": args.depth, "width": args.width}
    else:
        extra = {"filters": (args.width,) * args.depth, "batch_norm": False}
    model = models.build(args.model, x.shape[1:], num_classes, activation=args.activation,
                         kernel_initializer=initializer, **extra)
    if lsuv:
        initializers.lsuv_initialize(model, x, seed=args.seed)
    result = check_initialization(model, x, y, plot_path=Path(args.plot) if args.plot else None,
                                  initialized_with="lsuv" if lsuv else None)
    if args.json:
        print(json.dumps({"dataset": args.dataset, "model": args.model, "depth": args.depth,
                          "initializer": args.initializer, **result.to_dict()}, indent=2))
    else:
        print(f"check-init: {args.model} depth {args.depth} width {args.width} {args.activation}, "
              f"{args.initializer} on {len(x)} {args.dataset} examples")
        print(result.format_table())
        if result.plot_path:
            print(f"plot: {result.plot_path}")
    return 1 if (args.strict and not result.passed) else 0
