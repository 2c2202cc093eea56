"""keras-trainkit: training tools for Keras 3.

Optimizers, gradient transforms, learning-rate schedules, initializers,
regularizers, callbacks, a ``GradientTape`` trainer and KerasTuner search
spaces, each usable in ``model.fit``, in a custom loop, and in a search.

``import keras_trainkit`` imports every sub-package but ``tuning`` (which loads
KerasTuner on first use) and, where TensorFlow is not installed, ``training``,
and so registers every serializable class with Keras:
``keras.models.load_model`` reads a saved model that uses our objects after this
one import, with no ``custom_objects``. The ``trainkit`` console script is the
one exception: it imports the sub-packages itself, after parsing its arguments
(see ``keras_trainkit_cli``).
"""

import importlib
import importlib.util
import sys

__version__ = "0.1.0"

_SUBPACKAGES = ("callbacks", "datasets", "diagnostics", "initializers", "models", "optimizers",
                "regularizers", "schedules", "training", "utils")


def _import_subpackages() -> None:
    """Import every sub-package but ``tuning``; registers our classes with Keras.

    Where TensorFlow is not installed (a JAX or PyTorch setup), ``training``, the
    TensorFlow ``GradientTape`` Trainer, is left out too: the optimizers, transforms,
    schedules, initializers, regularizers, callbacks and diagnostics import and run
    on those backends without it, and ``keras_trainkit.training`` raises the
    ``ImportError`` that names TensorFlow on first use.
    """
    tensorflow_installed = importlib.util.find_spec("tensorflow") is not None
    for name in _SUBPACKAGES:
        if name != "training" or tensorflow_installed:
            importlib.import_module(f"{__name__}.{name}")


def __getattr__(name):
    # ``tuning`` imports KerasTuner; load it on first use only. The other
    # sub-packages are here already, except while the console script parses.
    if name in _SUBPACKAGES or name == "tuning":
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'keras_trainkit' has no attribute {name!r}")


if not getattr(sys.modules.get("keras_trainkit_cli"), "DEFER_IMPORTS", False):
    _import_subpackages()

__all__ = [
    "callbacks",
    "datasets",
    "diagnostics",
    "initializers",
    "models",
    "optimizers",
    "regularizers",
    "schedules",
    "training",
    "tuning",
    "utils",
    "__version__",
]
