"""Initialization check: per-layer activation and gradient statistics after one pass.

:func:`check_initialization` runs one forward and one backward pass of a batch
and reports, per layer, the mean and standard deviation of the activations, the
standard deviation of the gradient of the loss with respect to the layer's
output (and to its kernel), and the fraction of dead ReLU units. It warns, with
the reason, about the failure modes of a bad start (course notes, "where to
start"):

* **identical units**: a constant (e.g. all-zero) kernel gives every unit of
  the layer the same output and the same gradient, so gradient descent never
  makes them differ (symmetry is never broken);
* **vanishing / exploding activations**: the activation standard deviation of
  the last Dense/convolution layer is more than ``ratio_threshold`` (10) times
  smaller or larger than the first's (layers of the first one's class are
  compared: the Dense stack of an MLP, the convolutions of a CNN, since pooling
  rescales per-element statistics);
* **vanishing / exploding gradients**: the same for the gradient standard
  deviation, read backwards (first layer compared with the last);
* **dead ReLUs**: more than ``dead_threshold`` of a ReLU layer's units are zero
  on every example of the batch;
* **non-finite** activations or gradients.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_trainkit.diagnostics._init_advice import scale_advice
from keras_trainkit.utils.gradients import value_and_gradients
from keras_trainkit.utils.validation import (
    check_model_batch,
    check_number,
    check_probability,
    check_seed,
    check_type,
)

logger = logging.getLogger(__name__)

_KERNEL_LAYERS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_TINY = 1e-30


@dataclass
class LayerInitStats:
    """Statistics of one layer after one forward/backward pass.

    Attributes:
        name: layer name.
        kind: layer class name.
        activation_mean: mean of the layer's output over the batch.
        activation_std: standard deviation of the layer's output.
        gradient_std: standard deviation of d loss / d output.
        kernel_gradient_std: standard deviation of d loss / d kernel, or ``None``.
        dead_fraction: fraction of ReLU units that are zero on every example
            (``None`` for non-ReLU layers).
        has_kernel: whether the layer is a Dense/convolution layer.
    """

    name: str
    kind: str
    activation_mean: float
    activation_std: float
    gradient_std: float
    kernel_gradient_std: float | None = None
    dead_fraction: float | None = None
    has_kernel: bool = False


@dataclass
class InitWarning:
    """One problem found by :func:`check_initialization`.

    Attributes:
        kind: ``"identical_units"``, ``"vanishing_activations"``,
            ``"exploding_activations"``, ``"vanishing_gradients"``,
            ``"exploding_gradients"``, ``"dead_relu"`` or ``"non_finite"``.
        layer: the layer concerned (the first one for depth-wise warnings).
        reason: a sentence explaining the problem.
    """

    kind: str
    layer: str
    reason: str

    def __str__(self):
        return f"[{self.kind}] {self.layer}: {self.reason}"


@dataclass
class InitCheckResult:
    """The result of :func:`check_initialization`: per-layer statistics and warnings.

    ``str(result)`` (or :meth:`format_table`) is a readable table followed by
    the warnings; ``result.passed`` is ``True`` when there is no warning.
    """

    layers: list[LayerInitStats]
    warnings: list[InitWarning] = field(default_factory=list)
    loss: float = float("nan")
    plot_path: str | None = None

    @property
    def passed(self) -> bool:
        """``True`` when no warning was raised."""
        return not self.warnings

    def kinds(self) -> set[str]:
        """The set of warning kinds raised."""
        return {w.kind for w in self.warnings}

    def to_dict(self) -> dict:
        """A JSON-serializable dictionary of the result."""
        return {"loss": self.loss, "passed": self.passed,
                "layers": [asdict(layer) for layer in self.layers],
                "warnings": [asdict(w) for w in self.warnings]}

    def format_table(self) -> str:
        """The per-layer table and the warnings as text."""
        def fmt(value):
            return "-" if value is None else f"{value:.3g}"

        header = (f"{'layer':<16} {'type':<14} {'act mean':>10} {'act std':>10} "
                  f"{'grad std':>10} {'kernel grad':>11} {'dead ReLU':>9}")
        lines = [header, "-" * len(header)]
        for s in self.layers:
            dead = "-" if s.dead_fraction is None else f"{100 * s.dead_fraction:.0f}%"
            lines.append(f"{s.name[:16]:<16} {s.kind[:14]:<14} {fmt(s.activation_mean):>10} "
                         f"{fmt(s.activation_std):>10} {fmt(s.gradient_std):>10} "
                         f"{fmt(s.kernel_gradient_std):>11} {dead:>9}")
        lines.append(f"loss: {self.loss:.4g}")
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning(s):")
            lines.extend(f"  {w}" for w in self.warnings)
        else:
            lines.append("no warnings: the initialization looks healthy")
        return "\n".join(lines)

    def __str__(self):
        return self.format_table()


def _is_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) == "relu"


def _std(a) -> float:
    return float(np.std(a)) if a.size else float("nan")


class _Offset(keras.layers.Layer):
    """``x + offset`` with a zero ``offset``: its gradient is the loss's gradient at ``x``."""

    def __init__(self, offset, **kwargs):
        super().__init__(**kwargs)
        self.offset = offset

    def call(self, x):
        return x + keras.ops.cast(self.offset, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def _probe(model, layers, batch):
    """``(probe, offsets)``: ``model``'s graph with a zero offset after each of ``layers``.

    The probe (the same layers and weights, through ``keras.models.clone_model``
    with a ``call_function``) outputs every layer's output plus the model's
    outputs; the gradient with respect to the ``batch``-shaped offset variables
    is the gradient with respect to the layers' outputs on every backend, where
    JAX cannot differentiate with respect to an intermediate tensor directly.
    """
    wanted = {id(layer) for layer in layers}
    offsets, taps = {}, {}

    def call_function(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if id(layer) not in wanted:
            return out
        if id(layer) in taps or not isinstance(out, keras.KerasTensor) or None in tuple(out.shape[1:]):
            raise ValueError("Argument `model` must call each layer once, with one output of a fixed "
                             f"shape. Received: layer {layer.name!r} with output {out!r}")
        offsets[id(layer)] = keras.Variable(np.zeros((batch,) + tuple(out.shape[1:])), dtype=out.dtype,
                                            trainable=False, name=f"{layer.name}_offset")
        taps[id(layer)] = _Offset(offsets[id(layer)], dtype=out.dtype, name=f"{layer.name}_probe")(out)
        return taps[id(layer)]

    functional = keras.Model(model.inputs, model.outputs) if isinstance(model, keras.Sequential) else model
    clone = keras.models.clone_model(functional, clone_function=lambda layer: layer,
                                     call_function=call_function)
    inputs = clone.inputs[0] if len(clone.inputs) == 1 else clone.inputs
    probe = keras.Model(inputs, [taps[id(layer)] for layer in layers] + list(clone.outputs))
    return probe, [offsets[id(layer)] for layer in layers]


def _one_pass(model, layers, x, examples, y_batch, loss, seed):
    """One forward and backward pass: ``(outputs, output gradients, {layer: kernel-gradient std}, loss)``.

    The loss is the given one on ``y_batch``, or without labels the surrogate
    ``mean_i sum(prediction_i * r_i)`` with fixed random directions ``r_i``, one
    per example (one ``r`` for all made the output gradient of a 1-unit output
    the same on every example: its std 0, a false "exploding gradients"). Runs on
    every Keras backend (gradients through ``keras_trainkit.utils.gradients``).
    """
    probe, offsets = _probe(model, layers, examples)
    kernel_layers = [layer for layer in layers if isinstance(layer, _KERNEL_LAYERS)]
    if y_batch is not None and len(model.outputs) != 1:
        raise ValueError("Argument `y_batch` is only supported for single-output models. "
                         f"Received: a model with {len(model.outputs)} outputs")
    loss_fn = keras.losses.get(loss) if loss is not None else \
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rng = np.random.default_rng(seed)
    directions = [rng.normal(size=(examples,) + tuple(output.shape[1:])) for output in model.outputs]

    def forward():
        everything = list(probe(x, training=False))
        outputs, predictions = everything[:len(layers)], everything[len(layers):]
        if y_batch is not None:
            return keras.ops.mean(loss_fn(np.asarray(y_batch), predictions[0])), outputs
        value = 0.0
        for prediction, direction in zip(predictions, directions):
            flat = keras.ops.reshape(prediction * keras.ops.cast(direction, prediction.dtype),
                                     (keras.ops.shape(prediction)[0], -1))
            value = value + keras.ops.mean(keras.ops.sum(flat, axis=1))
        return value, outputs

    value, outputs, gradients = value_and_gradients(forward, offsets + [layer.kernel for layer in kernel_layers])
    numpy = [keras.ops.convert_to_numpy(t) for t in list(outputs) + list(gradients)]
    kernel_grads = {layer.name: _std(g) for layer, g in zip(kernel_layers, numpy[2 * len(layers):])}
    return numpy[:len(layers)], numpy[len(layers):2 * len(layers)], kernel_grads, value


def _layer_findings(layer, out, grad, kernel_gradient_std, dead_threshold):
    """One layer's statistics and warnings (non-finite values, identical units, dead ReLUs)."""
    out = np.asarray(out, dtype="float64")
    grad = np.asarray(grad, dtype="float64")
    dead = None
    if _is_relu(layer) and out.ndim >= 2:
        units = out.reshape(out.shape[0], -1)
        dead = float(np.mean(np.all(units <= 0, axis=0)))
    stats = LayerInitStats(
        name=layer.name, kind=type(layer).__name__,
        activation_mean=float(np.mean(out)), activation_std=_std(out),
        gradient_std=_std(grad), kernel_gradient_std=kernel_gradient_std,
        dead_fraction=dead, has_kernel=isinstance(layer, _KERNEL_LAYERS))
    warnings = []
    if not (np.all(np.isfinite(out)) and np.all(np.isfinite(grad))):
        warnings.append(InitWarning("non_finite", layer.name, "non-finite activations or gradients after one pass"))
    if isinstance(layer, _KERNEL_LAYERS):
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        columns = kernel.reshape(-1, kernel.shape[-1])
        if columns.shape[1] > 1 and np.all(columns == columns[:, :1]):
            what = "all zero" if not np.any(kernel) else \
                ("constant" if np.all(kernel == kernel.flat[0]) else "made of identical columns")
            warnings.append(InitWarning(
                "identical_units", layer.name,
                f"the kernel is {what}: its {columns.shape[1]} units compute the same value and "
                "receive the same gradient, so training can never make them differ "
                "(symmetry is never broken); use a random initializer"))
    if dead is not None and dead > dead_threshold:
        warnings.append(InitWarning(
            "dead_relu", layer.name,
            f"{100 * dead:.0f}% of the ReLU units are zero on every example of the batch "
            "(no gradient flows through them); check the initializer's scale and the biases"))
    return stats, warnings


def check_initialization(model: keras.Model, x_batch, y_batch=None, loss=None, *,
                         ratio_threshold: float = 10.0, dead_threshold: float = 0.5,
                         plot_path=None, seed: int = 0,
                         initialized_with: str | None = None) -> InitCheckResult:
    """Check a freshly initialized model on one batch; return per-layer statistics and warnings.

    One forward pass (``training=False``) records every layer's output; one
    backward pass of the loss gives the gradient with respect to each output and
    kernel. With ``y_batch`` the loss is ``loss`` (default: sparse categorical
    cross-entropy on logits); without labels it is the surrogate
    ``mean_i r_i . f(x_i)`` with a fixed random ``r ~ N(0, I)``, whose gradient at
    the output has the same scale whatever the output's, so only the network's
    own growth or decay shows. See the module docstring for the warnings. A
    shrinking or growing signal comes with advice that names what the model does
    not already do (the scale-preserving initializer for its activations, LSUV,
    then normalization layers or residual connections).

    Args:
        model: a built flat functional or Sequential model.
        x_batch: an input batch (a few hundred examples): an array, or for a model
            with several inputs a list (in ``model.inputs`` order) or dict of arrays.
        y_batch: optional targets for ``loss``.
        loss: a Keras loss identifier or instance (used with ``y_batch``).
        ratio_threshold: the growth/decay factor across depth that triggers a
            warning (> 1; default 10).
        dead_threshold: the fraction of dead ReLU units that triggers a warning.
        plot_path: if given, a PNG with the per-layer standard deviations is written
            there (its folder is created if missing).
        seed: seed of the surrogate loss's random direction.
        initialized_with: how the kernels were initialized, when their
            ``kernel_initializer`` does not tell (e.g. ``"lsuv"`` after
            :func:`keras_trainkit.initializers.lsuv_initialize`); used in the advice.

    Returns:
        an :class:`InitCheckResult` (``print(result)`` shows the table).

    Example:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([keras.Input((16,)),
        ...                           keras.layers.Dense(32, kernel_initializer="zeros"),
        ...                           keras.layers.Dense(4)])
        >>> result = check_initialization(model, np.ones((8, 16), "float32"))
        >>> "identical_units" in result.kinds()
        True
    """
    check_type("model", model, keras.Model)
    check_number("ratio_threshold", ratio_threshold, minimum=1, min_inclusive=False)
    check_probability("dead_threshold", dead_threshold, include_one=True)
    check_type("seed", seed, int)
    check_seed("seed", seed)
    if initialized_with is not None:
        check_type("initialized_with", initialized_with, str)
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError("Argument `model` must be a built functional or Sequential model. "
                         f"Received: model={model.name!r}")
    x, examples = check_model_batch("x_batch", x_batch, model)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    outputs, output_grads, kernel_grads, value = _one_pass(model, layers, x, examples, y_batch, loss, seed)
    stats: list[LayerInitStats] = []
    warnings: list[InitWarning] = []
    for layer, out, grad in zip(layers, outputs, output_grads):
        layer_stats, layer_warnings = _layer_findings(layer, out, grad, kernel_grads.get(layer.name),
                                                      dead_threshold)
        stats.append(layer_stats)
        warnings.extend(layer_warnings)
    # Compare layers of one kind (the Dense stack of an MLP, the convolutions of a CNN):
    # pooling between a convolution stack and a Dense head rescales per-element statistics.
    kernel_stats = [s for s in stats if s.has_kernel]
    depth_stats = [s for s in kernel_stats if s.kind == kernel_stats[0].kind] if kernel_stats else []
    if len(depth_stats) >= 2:
        first, last = depth_stats[0], depth_stats[-1]
        advice = scale_advice(layers, [layer for layer in layers if isinstance(layer, _KERNEL_LAYERS)],
                              initialized_with)
        _ratio_warning(warnings, "activations", first.activation_std, last.activation_std,
                       first.name, last.name, ratio_threshold, forward=True, advice=advice)
        _ratio_warning(warnings, "gradients", first.gradient_std, last.gradient_std,
                       first.name, last.name, ratio_threshold, forward=False, advice=advice)
    result = InitCheckResult(layers=stats, warnings=warnings, loss=float(keras.ops.convert_to_numpy(value)))
    for w in warnings:
        logger.info("check_initialization: %s", w)
    if plot_path is not None:
        result.plot_path = str(plot_initialization(result, plot_path))
    return result


def _ratio_warning(warnings, what, first_std, last_std, first, last, threshold, forward, advice):
    if not (math.isfinite(first_std) and math.isfinite(last_std)):
        return
    # activations: last / first (forward); gradients: first / last (they flow backwards)
    start, end = (first_std, last_std) if forward else (last_std, first_std)
    src, dst = (first, last) if forward else (last, first)
    ratio = (end + _TINY) / (start + _TINY)
    direction = "forward" if forward else "backward"
    if ratio < 1 / threshold:
        warnings.append(InitWarning(
            f"vanishing_{what}", dst,
            f"the {what[:-1]} standard deviation shrinks {1 / ratio:.3g}x going {direction} from "
            f"{src} ({start:.3g}) to {dst} ({end:.3g}), more than {threshold:g}x across the depth; "
            f"the initial weights are too small for this depth: {advice}"))
    elif ratio > threshold:
        warnings.append(InitWarning(
            f"exploding_{what}", dst,
            f"the {what[:-1]} standard deviation grows {ratio:.3g}x going {direction} from "
            f"{src} ({start:.3g}) to {dst} ({end:.3g}), more than {threshold:g}x across the depth; "
            f"the initial weights are too large for this depth: {advice}"))


def plot_initialization(result: InitCheckResult, path):
    """Write a PNG of the per-layer activation and gradient standard deviations; return the path.

    The PNG's folder is created if missing.

    Example:
        >>> # plot_initialization(check_initialization(model, x), "init.png")
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    layers = [s for s in result.layers if s.has_kernel] or result.layers
    names = [s.name for s in layers]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key, title in ((axes[0], "activation_std", "activation std"),
                           (axes[1], "gradient_std", "gradient std (d loss / d output)")):
        values = [max(getattr(s, key), _TINY) for s in layers]
        ax.semilogy(range(len(values)), values, marker="o")
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(names, rotation=60, fontsize=7)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    fig.suptitle("initialization check" + ("" if result.passed else f" ({len(result.warnings)} warnings)"))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["InitCheckResult", "InitWarning", "LayerInitStats", "check_initialization", "plot_initialization"]
