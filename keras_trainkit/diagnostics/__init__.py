"""Diagnostics: learning-rate finder, initialization and gradient checks, plots."""

from keras_trainkit.diagnostics.gradient_check import CoordinateCheck, GradientCheckResult, gradient_check
from keras_trainkit.diagnostics.init_check import (
    InitCheckResult,
    InitWarning,
    LayerInitStats,
    check_initialization,
    plot_initialization,
)
from keras_trainkit.diagnostics.lr_finder import LRFinderResult, lr_find
from keras_trainkit.schedules.plot import plot_schedule  # noqa: E402

__all__: list[str] = ["LRFinderResult", "lr_find", "plot_schedule"]
__all__ += ["CoordinateCheck", "GradientCheckResult", "InitCheckResult", "InitWarning", "LayerInitStats",
            "check_initialization", "gradient_check", "plot_initialization"]
