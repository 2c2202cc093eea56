"""``trainkit datasets``: list the embedded data sets with their shapes and classes."""

from __future__ import annotations

import argparse
import json

HELP = "list the embedded data sets with their shapes and class counts"

#: Loading the arrays needs NumPy (and scikit-learn, mnist1d), not TensorFlow.
NEEDS_TENSORFLOW = False


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from keras_trainkit import datasets

    infos = [datasets.describe(name) for name in datasets.LOADERS]
    if args.json:
        print(json.dumps([info.__dict__ for info in infos], indent=2))
        return 0
    header = f"{'name':<9} {'train':<16} {'test':<16} {'classes':>7}  description"
    print(header)
    print("-" * len(header))
    for info in infos:
        print(f"{info.name:<9} {str(info.train_shape):<16} {str(info.test_shape):<16} "
              f"{info.num_classes:>7}  {info.description}")
    print(f"\ncache: {datasets.cache_dir()}")
    return 0
