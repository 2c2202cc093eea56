"""keras-trainkit: training tools for Keras 3.

Optimizers, gradient transforms, learning-rate schedules, initializers,
regularizers, callbacks, a ``GradientTape`` trainer and KerasTuner search
spaces, each usable in ``model.fit``, in a custom loop, and in a search.
"""

from keras_trainkit import (
    callbacks,
    datasets,
    diagnostics,
    initializers,
    models,
    optimizers,
    regularizers,
    schedules,
    training,
    utils,
)

__version__ = "0.1.0"


def __getattr__(name):
    # ``tuning`` imports KerasTuner; load it on first use only.
    if name == "tuning":
        import importlib

        return importlib.import_module("keras_trainkit.tuning")
    raise AttributeError(f"module 'keras_trainkit' has no attribute {name!r}")

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
