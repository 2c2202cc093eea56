"""``plot_schedule``: a PNG of a learning-rate schedule over a range of steps."""

from __future__ import annotations

import logging
import os

import numpy as np

from keras_trainkit.schedules._common import LearningRateSchedule
from keras_trainkit.utils import validation

logger = logging.getLogger(__name__)


def schedule_values(schedule, steps) -> np.ndarray:
    """The learning rates of ``schedule`` at steps ``0 .. steps - 1`` as a float64 array.

    The schedule is called once on the whole vector of steps when it supports
    that (every ``keras_trainkit`` schedule does); otherwise step by step.

    Args:
        schedule: a ``LearningRateSchedule``, a callable of the step, or a number.
        steps: the number of optimizer updates to evaluate, a positive integer.

    Example:
        >>> from keras_trainkit.schedules import LinearDecay
        >>> schedule_values(LinearDecay(1.0, 4), 5).tolist()
        [1.0, 0.75, 0.5, 0.25, 0.0]
    """
    validation.check_positive("steps", steps, integer=True)
    steps = int(steps)
    if not callable(schedule):
        validation.check_non_negative("schedule", schedule)
        return np.full(steps, float(schedule))
    grid = np.arange(steps, dtype="int64")
    try:
        values = np.asarray(schedule(grid), dtype="float64")
        if values.shape == (steps,):
            return values
    except Exception:  # noqa: BLE001 - a schedule that cannot take a vector
        logger.debug("Schedule %r is not vectorized; evaluating step by step.", schedule)
    return np.array([float(np.asarray(schedule(int(s)))) for s in grid], dtype="float64")


def plot_schedule(
    schedule,
    steps,
    path,
    *,
    title=None,
    log_scale=False,
    figsize=(6.0, 3.0),
    dpi=100,
):
    """Write a PNG of a learning-rate schedule over ``steps`` optimizer updates.

    Uses matplotlib's Agg canvas directly (no pyplot, no display, no global
    state), so it is safe in scripts, tests and headless servers. The x axis is
    the optimizer step (updates, not micro-batches or epochs).

    Args:
        schedule: a ``LearningRateSchedule``, a callable of the step, or a number.
        steps: the number of steps to plot, a positive integer.
        path: where to write the PNG (parent folders are created).
        title: the plot title; defaults to the schedule's class name.
        log_scale: plot the learning rate on a log axis.
        figsize: the figure size in inches; with ``dpi`` it sets the pixels
            (the default 6 x 3 at 100 dpi gives a 600 x 300 image).
        dpi: dots per inch, a positive number.

    Returns:
        ``path`` as a string.

    Example:
        >>> from keras_trainkit.schedules import OneCycle
        >>> plot_schedule(OneCycle(0.1, total_steps=1000), 1000, "one_cycle.png")
        'one_cycle.png'
    """
    validation.check_positive("dpi", dpi)
    if log_scale not in (True, False):
        raise TypeError(f"Argument `log_scale` must be a bool. Received: log_scale={log_scale!r}")
    values = schedule_values(schedule, steps)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if title is None:
        title = type(schedule).__name__ if isinstance(schedule, LearningRateSchedule) else "schedule"
    figure = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot(np.arange(len(values)), values, linewidth=1.5)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("learning rate")
    axes.set_title(title, fontsize=10)
    if log_scale:
        axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    figure.savefig(path, format="png", dpi=dpi)
    logger.info("Wrote schedule plot %s", path)
    return path


__all__ = ["plot_schedule", "schedule_values"]
