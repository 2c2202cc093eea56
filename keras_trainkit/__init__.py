"""keras-trainkit: training tools for Keras 3.

Optimizers, gradient transforms, learning-rate schedules, initializers,
regularizers, callbacks, a ``GradientTape`` trainer and KerasTuner search
spaces, each usable in ``model.fit``, in a custom loop, and in a search.

``import keras_trainkit`` imports every sub-package but ``tuning`` (which loads
KerasTuner on first use) and, off the TensorFlow backend, ``training`` (the
TensorFlow-only Trainer, loaded on first use there), and so registers every
serializable class with Keras:
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

    ``training``, the TensorFlow ``GradientTape`` Trainer, is imported only on the
    TensorFlow backend: on JAX or PyTorch the Trainer cannot run (it says so), and
    importing it would load TensorFlow for nothing where TensorFlow is installed
    (about 2 s of every ``import keras_trainkit``) and fail where it is not. The
    optimizers, transforms, schedules, initializers, regularizers, callbacks and
    diagnostics import and run on every backend; ``keras_trainkit.training`` is
    loaded on first use there (its ``BatchSizeSchedule`` registers itself then,
    and only the Trainer reads one).
    """
    import keras

    for name in _SUBPACKAGES:
        if name != "training" or _trainer_can_run(keras.backend.backend()):
            importlib.import_module(f"{__name__}.{name}")


def _trainer_can_run(backend: str) -> bool:
    return backend == "tensorflow" and importlib.util.find_spec("tensorflow") is not None


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
