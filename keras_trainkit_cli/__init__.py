"""Entry point of the ``trainkit`` console script (also ``python -m keras_trainkit_cli``).

``import keras_trainkit`` imports every sub-package, and with them TensorFlow
(5-15 s, and TensorFlow's C++ start-up log lines), so that
``keras.models.load_model`` finds our classes after that one import. A command
line should not wait for that to print ``--help`` or an argument error. Importing
``keras_trainkit.cli`` runs ``keras_trainkit/__init__.py`` first, so the console
script starts in this separate package instead: while :data:`DEFER_IMPORTS` is
true, ``import keras_trainkit`` loads no sub-package, and ``keras_trainkit.cli``
imports them (quietly) only for the commands that need them.
"""

#: Read by ``keras_trainkit/__init__.py``; true from the moment :func:`main` runs.
#: Processes that import this package without calling ``main`` (e.g. the workers a
#: parallel search spawns) import ``keras_trainkit`` whole, as usual.
DEFER_IMPORTS = False


def main(argv: list[str] | None = None) -> int:
    """Run the ``trainkit`` command line; returns the exit status."""
    global DEFER_IMPORTS
    DEFER_IMPORTS = True
    from keras_trainkit.cli import main as run_command_line

    return run_command_line(argv)
