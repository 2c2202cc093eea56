"""Learning-rate range test (Smith 2017), in the manner of fastai's ``lr_find``.

The model trains for at most ``num_steps`` steps while the learning rate grows
from ``start_lr`` to ``end_lr``; the loss curve shows where training starts to
make progress and where it diverges. Weights and optimizer state are put back
bit for bit afterwards, so the finder can run before the real training.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_trainkit.optimizers import control
from keras_trainkit.utils.checkpoints import variable_arrays
from keras_trainkit.utils.validation import (
    check_in,
    compiled_loss_reads_targets,
    check_non_negative,
    check_number,
    check_positive,
    check_probability,
)

logger = logging.getLogger(__name__)

MODES = ("exponential", "linear")

#: How each suggestion is chosen (see :func:`suggest`), for plots and printouts.
SUGGESTION_RULES = {
    "valley": "middle of the longest descent",
    "steep": "steepest descent per log(lr)",
    "minimum": "lowest loss's lr / 10",
}


@dataclass
class LRFinderResult:
    """What :func:`lr_find` measured.

    Attributes:
        learning_rates: the learning rate of each step taken.
        losses: the training loss of each step (the batch's loss).
        smoothed_losses: the bias-corrected exponential moving average of
            ``losses`` (see :func:`lr_find`).
        suggestions: ``{"valley": ..., "steep": ..., "minimum": ...}``, see
            :func:`lr_find`.
        suggestion: the headline suggestion, ``suggestions["valley"]``.
        diverged: whether the sweep stopped early because the smoothed loss
            exceeded ``divergence_threshold`` times its best (or the loss was
            not finite).
        mode: ``"exponential"`` or ``"linear"``.
        skip_start, skip_end: points left out of the suggestions and the plot.
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    suggestions: dict[str, float] = field(default_factory=dict)
    diverged: bool = False
    mode: str = "exponential"
    skip_start: int = 0
    skip_end: int = 0

    @property
    def suggestion(self) -> float:
        """The "valley" suggestion (fastai's default)."""
        return self.suggestions["valley"]

    @property
    def lowest_loss_learning_rate(self) -> float:
        """The learning rate at the lowest smoothed loss (of the points the
        suggestions use); ``suggestions["minimum"]`` is a tenth of it."""
        lrs, smooth = _trim(self, self.learning_rates, self.smoothed_losses)
        finite = np.isfinite(smooth)
        return float(lrs[finite][int(np.argmin(smooth[finite]))])

    def plot(self, path=None, *, title: str | None = None):
        """Plot the smoothed (and raw) loss against the learning rate.

        The x axis is logarithmic for an exponential sweep. The lowest smoothed
        loss is marked where it is, and each suggestion at its learning rate on
        the curve, labelled with the rule that chose it (``"minimum"`` is the
        lowest loss's learning rate divided by 10, so it sits left of the lowest
        point). With ``path`` the figure is written as a PNG (its folder created
        if missing) and the path is returned, otherwise the
        ``matplotlib.figure.Figure``.

        Example:
            >>> # result.plot("lr_find.png")
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(7, 4.5))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot(1, 1, 1)
        lrs, raw, smooth = _trim(self, self.learning_rates, self.losses, self.smoothed_losses)
        axes.plot(lrs, raw, color="0.75", linewidth=1, label="loss")
        axes.plot(lrs, smooth, color="C0", linewidth=2, label="smoothed loss")
        lowest = self.lowest_loss_learning_rate
        axes.plot([lowest], [float(np.nanmin(smooth))], marker="*", color="k", linestyle="none",
                  markersize=12, label=f"lowest smoothed loss: lr {lowest:.2e}")
        markers = {"valley": ("C3", "o"), "steep": ("C2", "^"), "minimum": ("C1", "s")}
        for name, value in self.suggestions.items():
            color, marker = markers.get(name, ("k", "x"))
            y = float(np.interp(np.log(value), np.log(lrs), smooth)) if len(lrs) else 0.0
            rule = SUGGESTION_RULES.get(name, name)
            axes.plot([value], [y], marker=marker, color=color, linestyle="none",
                      markersize=8, label=f"{name} ({rule}): {value:.2e}")
        if self.mode == "exponential":
            axes.set_xscale("log")
        finite = smooth[np.isfinite(smooth)]
        if finite.size:
            low, high = float(finite.min()), float(finite[0])
            span = max(high - low, 1e-12)
            axes.set_ylim(low - 0.1 * span, high + 0.5 * span)
        axes.set_xlabel("learning rate")
        axes.set_ylabel("training loss")
        axes.set_title(title or "Learning-rate range test")
        axes.legend(loc="best", fontsize="small")
        axes.grid(True, which="both", alpha=0.3)
        figure.tight_layout()
        if path is None:
            return figure
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=100)
        return path

    def to_dict(self) -> dict:
        """A JSON-serializable summary."""
        return {
            "learning_rates": self.learning_rates.tolist(),
            "losses": self.losses.tolist(),
            "smoothed_losses": self.smoothed_losses.tolist(),
            "suggestions": dict(self.suggestions),
            "suggestion_rules": {name: SUGGESTION_RULES[name] for name in self.suggestions},
            "suggestion": self.suggestion,
            "lowest_loss_learning_rate": self.lowest_loss_learning_rate,
            "diverged": self.diverged,
            "mode": self.mode,
        }


def _trim(result, *arrays):
    """Drop ``skip_start`` first and ``skip_end`` last points (unless fewer than 3 remain)."""
    n = len(arrays[0])
    start, stop = result.skip_start, n - result.skip_end
    if stop - start < 3:
        start, stop = 0, n
    return tuple(np.asarray(a)[start:stop] for a in arrays)


def smooth_losses(losses, smoothing: float) -> np.ndarray:
    """Bias-corrected exponential moving average, as in Adam's first moment.

    ``a_i = beta * a_{i-1} + (1 - beta) * loss_i`` with ``a_0 = 0`` and the
    smoothed loss ``a_i / (1 - beta ** i)`` (``i`` from 1), ``beta = smoothing``.
    """
    average, out = 0.0, []
    for i, loss in enumerate(np.asarray(losses, dtype=np.float64), start=1):
        average = smoothing * average + (1.0 - smoothing) * loss
        out.append(average / (1.0 - smoothing**i))
    return np.asarray(out)


def suggest(learning_rates, smoothed_losses) -> dict[str, float]:
    """The three suggestions from a (trimmed) sweep.

    * ``"minimum"``: the learning rate of the lowest smoothed loss, divided by 10;
    * ``"steep"``: where the smoothed loss falls fastest per unit of
      ``log(lr)`` (the most negative finite difference);
    * ``"valley"``: the longest run of decreasing losses (the longest strictly
      decreasing subsequence of the curve, the "valley" before divergence),
      taken halfway between its first and last point.
    """
    lrs = np.asarray(learning_rates, dtype=np.float64)
    loss = np.asarray(smoothed_losses, dtype=np.float64)
    keep = np.isfinite(loss)
    lrs, loss = lrs[keep], loss[keep]
    if lrs.size == 0:
        raise ValueError("The sweep recorded no finite loss; lower `start_lr`. Received: losses=[]")
    suggestions = {"minimum": float(lrs[int(np.argmin(loss))] / 10.0)}
    if lrs.size >= 2:
        slope = np.diff(loss) / np.diff(np.log(lrs))
        suggestions["steep"] = float(lrs[int(np.argmin(slope))])
    else:
        suggestions["steep"] = float(lrs[0])
    # Longest strictly decreasing subsequence: length and first index of the best chain
    # ending at each point.
    n = loss.size
    length = np.ones(n, dtype=int)
    first = np.arange(n)
    for i in range(n):
        for j in range(i):
            if loss[i] < loss[j] and length[j] + 1 > length[i]:
                length[i], first[i] = length[j] + 1, first[j]
    end = int(np.argmax(length))
    start = int(first[end])
    suggestions["valley"] = float(lrs[start + (end - start) // 2])
    return suggestions


def _batches(data, batch_size, seed):
    import tensorflow as tf

    from keras_trainkit.datasets import to_dataset

    if isinstance(data, tf.data.Dataset):
        dataset = data
    elif isinstance(data, (tuple, list)) and len(data) in (1, 2):
        dataset = to_dataset(data[0], data[1] if len(data) > 1 else None, batch_size=batch_size,
                             shuffle=True, seed=seed)
    elif isinstance(data, (tuple, list)) and len(data) == 3:
        # (x, y, sample_weight): batched together as (x, (y, sample_weight)), then flattened
        dataset = to_dataset(data[0], (data[1], data[2]), batch_size=batch_size, shuffle=True, seed=seed)
        dataset = dataset.map(lambda x, target: (x, target[0], target[1]))
    else:
        raise TypeError(
            "Argument `data` must be a tf.data.Dataset of batches or an `(x, y[, sample_weight])` tuple of "
            f"arrays, not {type(data).__name__}. Received: data={data!r:.80}"
        )
    if keras.backend.backend() != "tensorflow":
        # JAX's train_on_batch cannot take TensorFlow tensors: hand over NumPy batches.
        return dataset.repeat().as_numpy_iterator()
    return iter(dataset.repeat())


def sweep_learning_rates(start_lr, end_lr, num_steps, mode) -> np.ndarray:
    """The learning rate of each step: geometric (``exponential``) or arithmetic (``linear``).

    ``lr_i = start * (end / start) ** (i / (n - 1))`` or
    ``lr_i = start + (end - start) * i / (n - 1)``, ``i = 0 .. n - 1``.
    """
    fraction = np.arange(num_steps, dtype=np.float64) / max(num_steps - 1, 1)
    if mode == "exponential":
        return start_lr * (end_lr / start_lr) ** fraction
    return start_lr + (end_lr - start_lr) * fraction


def lr_find(
    model,
    data,
    start_lr=1e-7,
    end_lr=10.0,
    num_steps=100,
    mode="exponential",
    smoothing=0.98,
    divergence_threshold=4.0,
    batch_size=32,
    skip_start=None,
    skip_end=5,
    seed=0,
) -> LRFinderResult:
    """Learning-rate range test: train briefly with a growing learning rate, then restore.

    Step ``i`` (``i = 0 .. num_steps - 1``) trains on one batch with
    ``lr_i = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))``
    (``mode="linear"``: ``start_lr + (end_lr - start_lr) * i / (num_steps - 1)``)
    through the model's own compiled ``train_on_batch`` (its ``train_step``,
    loss and regularization losses). The loss is smoothed with a
    bias-corrected exponential moving average, ``a_i = beta a_{i-1} + (1 - beta)
    loss_i``, ``smoothed_i = a_i / (1 - beta^i)`` with ``beta = smoothing``; the
    sweep stops when ``smoothed_i > divergence_threshold * min_{j <= i}
    smoothed_j`` or the loss is not finite (positive losses assumed). With
    ``gradient_accumulation_steps=k`` each step is one optimizer update: ``k``
    batches at the same learning rate, their mean loss recorded.

    Suggestions (fastai's three, computed on the smoothed losses without the
    first ``skip_start`` and last ``skip_end`` points): ``"valley"`` (middle of
    the longest decreasing stretch; the headline ``result.suggestion``),
    ``"steep"`` (steepest descent per unit of ``log lr``), ``"minimum"`` (the
    lowest loss's learning rate / 10).

    Afterwards every model variable (weights, BatchNorm statistics, seed
    states), every optimizer variable (slots, ``iterations``, accumulators, a
    float learning rate), the state of the weights' regularizers (``SpectralNorm``'s
    ``u``) and the optimizer's learning-rate object (a schedule is set aside
    during the sweep and put back, with the model's traced train function) are
    restored exactly. Metric states are reset.

    Args:
        model: a compiled ``keras.Model``.
        data: a ``tf.data.Dataset`` of ``(x, y[, sample_weight])`` batches, or an
            ``(x, y)`` or ``(x, y, sample_weight)`` tuple of arrays (batched with
            ``batch_size``, shuffled with ``seed``). It is repeated as needed.
        start_lr: first learning rate (> 0).
        end_lr: last learning rate (> ``start_lr``).
        num_steps: number of learning rates tried (>= 2).
        mode: ``"exponential"`` (default) or ``"linear"``.
        smoothing: ``beta`` of the moving average, in ``[0, 1)``.
        divergence_threshold: stop factor (> 1).
        batch_size: batch size for array data.
        skip_start: points left out at the start for the suggestions and plot
            (default ``num_steps // 10``).
        skip_end: points left out at the end (default 5).
        seed: shuffle seed for array data.

    Returns:
        An :class:`LRFinderResult` (``.suggestion``, ``.plot(path)``).

    Example:
        >>> import keras, numpy as np
        >>> from keras_trainkit.diagnostics import lr_find
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.01), "mse")
        >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
        >>> result = lr_find(model, (x, x.sum(1, keepdims=True)), num_steps=20, batch_size=16)
        >>> len(result.learning_rates) <= 20
        True

    Reference: Smith, "Cyclical Learning Rates for Training Neural Networks"
    (WACV 2017), section 3.3 (the "LR range test").
    """
    _check_arguments(model, start_lr, end_lr, num_steps, mode, smoothing, divergence_threshold, batch_size,
                     skip_start, skip_end)
    num_steps = int(num_steps)
    skip_start = num_steps // 10 if skip_start is None else int(skip_start)
    learning_rates = sweep_learning_rates(float(start_lr), float(end_lr), num_steps, mode)
    batches = _batches(data, int(batch_size), seed)
    first = next(batches)
    _check_targets(model, first)
    if not model.built:
        model(keras.utils.unpack_x_y_sample_weight(first)[0])
    control.build_optimizer(model)
    leaves = control.leaf_optimizers(model.optimizer)  # after the build: a MultiOptimizer knows its parts then
    accumulation = max(int(leaf.gradient_accumulation_steps or 1) for leaf in leaves)
    with _restored_afterwards(model, leaves, float(start_lr)) as handles:
        tried, losses, smoothed, diverged = _sweep(
            model, itertools.chain([first], batches), learning_rates, handles, accumulation,
            smoothing, divergence_threshold)
    result = LRFinderResult(
        learning_rates=np.asarray(tried),
        losses=np.asarray(losses),
        smoothed_losses=np.asarray(smoothed),
        diverged=diverged,
        mode=mode,
        skip_start=skip_start,
        skip_end=int(skip_end),
    )
    lrs, smooth = _trim(result, result.learning_rates, result.smoothed_losses)
    result.suggestions = suggest(lrs, smooth)
    logger.info("lr_find: %d steps, diverged=%s, suggestions=%s", len(tried), diverged,
                result.suggestions)
    return result


def _check_arguments(model, start_lr, end_lr, num_steps, mode, smoothing, divergence_threshold, batch_size,
                     skip_start, skip_end) -> None:
    check_positive("start_lr", start_lr)
    check_number("end_lr", end_lr, minimum=start_lr, min_inclusive=False,
                 hint="The sweep must go from `start_lr` up to `end_lr`")
    check_number("num_steps", num_steps, minimum=2, integer=True)
    check_in("mode", mode, MODES)
    check_probability("smoothing", smoothing)
    check_number("divergence_threshold", divergence_threshold, minimum=1.0, min_inclusive=False)
    check_positive("batch_size", batch_size, integer=True)
    if skip_start is not None:
        check_non_negative("skip_start", skip_start, integer=True)
    check_non_negative("skip_end", skip_end, integer=True)
    if not isinstance(model, keras.Model) or getattr(model, "optimizer", None) is None or not getattr(
        model, "compiled", False
    ):
        raise ValueError(
            "Argument `model` must be a keras.Model compiled with an optimizer and a loss "
            f"(call model.compile first). Received: model={model!r}"
        )


def _check_targets(model, batch) -> None:
    """Refuse data without targets where the compiled loss reads them (``(x,)``, or a dataset
    of inputs alone): Keras failed in the sweep's first step, "None values not supported"."""
    _, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
    if y is None and compiled_loss_reads_targets(model):
        raise ValueError(
            "Argument `data` must hold targets, `(x, y[, sample_weight])` arrays or a dataset of such "
            f"batches: the compiled loss ({model.loss!r:.60}) needs them. Received: data without targets"
        )


@contextlib.contextmanager
def _restored_afterwards(model, leaves, start_lr):
    """Yield the leaves' rate handles, overridden for the sweep; afterwards put every variable back exactly.

    A float learning rate's own variable is swept; a schedule is replaced by a
    variable for the sweep (the traced train function with it). Model and
    optimizer variables (of the wrapper and of every leaf) are copied first, and the
    state the weights' regularizers keep (``regularizers.state_variables``:
    ``SpectralNorm``'s ``u``).
    """
    model_variables = control.model_state_variables(model)
    optimizer_variables, seen = [], set()
    for variable in [*model.optimizer.variables, *(v for leaf in leaves for v in leaf.variables)]:
        if id(variable) not in seen:
            seen.add(id(variable))
            optimizer_variables.append(variable)
    model_state = variable_arrays(model_variables)
    optimizer_state = variable_arrays(optimizer_variables)
    saved_train_function = model.train_function
    saved_stop = getattr(model, "stop_training", False)
    handles = [control.LearningRateHandle(leaf) for leaf in leaves]
    swapped = any([handle.begin_override(start_lr) for handle in handles])
    if swapped:
        model.train_function = None  # trace a step that reads the temporary variable
    try:
        yield handles
    finally:
        for variable, value in zip(model_variables, model_state):
            variable.assign(value)
        for variable, value in zip(optimizer_variables, optimizer_state):
            variable.assign(value)
        for handle in handles:
            handle.end_override()
        if swapped:
            model.train_function = saved_train_function
        model.stop_training = saved_stop
        model.reset_metrics()


def _sweep(model, batches, learning_rates, handles, accumulation, smoothing, divergence_threshold):
    """Train one update per learning rate; ``(tried, losses, smoothed, diverged)``."""
    tried, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    held = any(handle.held for handle in handles)  # a schedule's stand-in, outside JAX's state
    for i, learning_rate in enumerate(learning_rates):
        for handle in handles:
            handle.override_variable.assign(float(learning_rate))
        if held:  # JAX with XLA froze the held rate into the step: one compilation per rate
            control.assigned_outside_state(model)
        step_losses = []
        for _ in range(accumulation):
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(next(batches))
            logs = model.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)
            step_losses.append(float(logs["loss"]))
        loss = float(np.mean(step_losses))
        tried.append(float(learning_rate))
        losses.append(loss)
        average = smoothing * average + (1.0 - smoothing) * loss
        smooth = average / (1.0 - smoothing ** (i + 1))
        smoothed.append(smooth)
        if not math.isfinite(loss) or not math.isfinite(smooth):
            return tried, losses, smoothed, True
        best = min(best, smooth)
        if smooth > divergence_threshold * best:
            return tried, losses, smoothed, True
    return tried, losses, smoothed, False


__all__ = ["LRFinderResult", "SUGGESTION_RULES", "lr_find", "smooth_losses", "suggest",
           "sweep_learning_rates"]
