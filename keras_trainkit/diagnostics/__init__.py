"""Diagnostics: learning-rate finder, initialization and gradient checks, plots."""

from keras_trainkit.diagnostics.lr_finder import LRFinderResult, lr_find
from keras_trainkit.schedules.plot import plot_schedule  # noqa: E402

__all__: list[str] = ["LRFinderResult", "lr_find", "plot_schedule"]
