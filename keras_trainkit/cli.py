"""The ``trainkit`` console script (also ``python -m keras_trainkit_cli``).

Each sub-command lives in its own module under ``keras_trainkit.commands`` and
defines ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``; it
may define ``check(args)``, the argument and output-path checks that run before
TensorFlow is imported, and ``NEEDS_TENSORFLOW = False`` when it does without.
Adding a command means adding its module name to ``COMMANDS``.

Quiet and fast: the console script enters through ``keras_trainkit_cli``, so
parsing, ``--help``, ``check`` and argument errors run before TensorFlow is
imported (well under a second instead of 5-15 s). TensorFlow's C++ log lines are
kept off the terminal unless ``--verbose`` is given (see :func:`import_library`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import tempfile

from keras_trainkit.utils.validation import MissingPackage

COMMANDS = ("datasets", "demo", "lr-find", "tune", "check-init")

#: ``TF_CPP_MIN_LOG_LEVEL`` without ``--verbose``: TensorFlow's C++ logging shows
#: fatal errors only (its errors still reach Python as exceptions).
QUIET_TF_LOG_LEVEL = "3"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per command in ``COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="trainkit",
        description="keras-trainkit: training tools for Keras 3 on embedded data sets.",
    )
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level of the library and of Optuna (default: WARNING)")
    parser.add_argument("--verbose", dest="show_tensorflow_logs", action="store_true",
                        help="show TensorFlow's C++ log lines (start-up messages, device and "
                             "kernel warnings), hidden by default; give it before the command")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"keras_trainkit.commands.{name.replace('-', '_')}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(handler=module.run, check=getattr(module, "check", None),
                         needs_tensorflow=getattr(module, "NEEDS_TENSORFLOW", True))
    return parser


@contextlib.contextmanager
def _stderr_captured():
    """Point file descriptor 2 at a temporary file for the block, then restore it.

    Lines written from C++ go to the descriptor, not to ``sys.stderr``, so only a
    redirection of the descriptor keeps them off the terminal. If the block
    raises, the captured text is written to the real standard error first, so a
    failed import still shows everything it printed.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            _restore(saved)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            sys.stderr.flush()
            raise
        else:
            _restore(saved)


def _restore(saved_fd: int) -> None:
    sys.stderr.flush()
    os.dup2(saved_fd, 2)
    os.close(saved_fd)


def import_library(verbose: bool = False) -> None:
    """Import TensorFlow and every ``keras_trainkit`` sub-package (which registers
    our classes with Keras).

    Unless ``verbose``: ``TF_CPP_MIN_LOG_LEVEL`` is set to
    :data:`QUIET_TF_LOG_LEVEL` before the import, and file descriptor 2 points at
    a temporary file during the import only, because some start-up lines ignore
    that variable ("All log messages before absl::InitializeLog() is called...",
    ``cudart_stub``'s "Could not find cuda drivers", ``cpu_feature_guard``'s CPU
    instructions). Standard error is restored right after the import.
    """
    import keras_trainkit

    if verbose or "tensorflow" in sys.modules:
        keras_trainkit._import_subpackages()
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_LOG_LEVEL
    with _stderr_captured():
        import tensorflow  # noqa: F401

        keras_trainkit._import_subpackages()


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit status.

    A user error (a bad argument value, an output path that cannot be written, a
    package an argument needs that is not installed) prints one line,
    ``trainkit <command>: error: ...``, and returns 2; checks that need no
    TensorFlow run before it is imported. Ctrl-C prints one line and returns 130.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.check is not None:
            args.check(args)
        if args.needs_tensorflow:
            import_library(verbose=args.show_tensorflow_logs)
        return int(args.handler(args) or 0)
    except (ValueError, TypeError, MissingPackage) as error:
        print(f"trainkit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback through TensorFlow
        resume = "; run the same command again to resume the search" if args.command == "tune" else ""
        print(f"trainkit {args.command}: interrupted{resume}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports a command that Ctrl-C stopped
    except BrokenPipeError:  # `trainkit datasets --json | head`: the reader left, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 141  # 128 + SIGPIPE, as a shell reports a command whose reader left


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
