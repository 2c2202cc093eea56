"""The ``trainkit`` console script (also ``python -m keras_trainkit``).

Each sub-command lives in its own module under ``keras_trainkit.commands`` and
defines ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``.
Adding a command means adding its module name to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Keep TensorFlow's C++ start-up chatter out of the command's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

COMMANDS = ("datasets", "demo", "lr-find", "tune", "check-init")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per command in ``COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="trainkit",
        description="keras-trainkit: training tools for Keras 3 on embedded data sets.",
    )
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level of the library (default: WARNING)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"keras_trainkit.commands.{name.replace('-', '_')}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except (ValueError, TypeError) as error:
        print(f"trainkit {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
