"""Gradient check: automatic differentiation against central finite differences.

The course's "numeric vs. automatic differentiation": for a weight coordinate
``w_k``,

    numeric_k = (L(w + h e_k) - L(w - h e_k)) / (2 h)       (error O(h^2))

is compared with the backend's automatic gradient ``analytic_k`` (``tf.GradientTape``,
``jax.grad`` or ``torch.autograd``, through ``utils.gradients``) through the
relative error

    rel_k = |analytic_k - numeric_k| / max(|analytic_k|, |numeric_k|)

(``0`` when both are below ``abs_tolerance``). A correct model in float64 gives
``max_k rel_k`` around 1e-8 or below; a wrong gradient (a custom layer's or
loss's ``tf.custom_gradient``) gives errors of order 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import keras
import numpy as np

from keras_trainkit.utils.dtypes import HALF_FLOATS
from keras_trainkit.utils.gradients import value_and_gradients
from keras_trainkit.utils.validation import check_non_negative, check_positive, check_seed, check_type

logger = logging.getLogger(__name__)


@dataclass
class CoordinateCheck:
    """One checked weight coordinate."""

    weight: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    relative_error: float


@dataclass
class GradientCheckResult:
    """The result of :func:`gradient_check`.

    Attributes:
        max_relative_error: the largest relative error over the coordinates.
        threshold: the verdict threshold.
        passed: ``max_relative_error < threshold``.
        dtype: the dtype the check computed in (``"float64"`` unless the model
            could not be cloned in float64; ``"float32"`` for a float32 clone of
            a 16-bit model).
        coordinates: every checked coordinate, worst first.
    """

    max_relative_error: float
    threshold: float
    passed: bool
    dtype: str
    coordinates: list[CoordinateCheck] = field(default_factory=list)

    def __str__(self):
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"gradient check {verdict}: max relative error {self.max_relative_error:.3e} "
                 f"(threshold {self.threshold:.0e}, {self.dtype}, {len(self.coordinates)} coordinates)"]
        for c in self.coordinates[:5]:
            lines.append(f"  {c.weight}{list(c.index)}: autodiff {c.analytic:+.6e}  "
                         f"numeric {c.numeric:+.6e}  rel {c.relative_error:.2e}")
        return "\n".join(lines)


def _computes_in_float64() -> bool:
    """Whether Keras's type promotion keeps float64 on this backend.

    Keras (3.15) turns every 64-bit result of its promotion
    (``keras.backend.result_type``) into 32 bits on JAX and PyTorch, to match
    JAX's default: a float64 ``Dense`` there adds its bias in float32. A float64
    check would then compare float32 finite differences with the float64
    threshold and fail a correct model.
    """
    return keras.backend.result_type("float64", "float64") == "float64"


def _compute_dtypes(layer) -> set[str]:
    """The compute dtypes of ``layer`` and of every layer nested in it."""
    dtypes = {str(getattr(layer, "compute_dtype", None))}
    for child in getattr(layer, "layers", None) or []:
        dtypes |= _compute_dtypes(child)
    return dtypes


def _computes_in_half(model) -> bool:
    """Whether some layer of ``model`` computes in 16 bits (``mixed_float16``, ``float16``, ...).

    A 16-bit loss has about 3 significant digits (float16's machine epsilon is
    ``2**-10``): its central differences ``(L(w + h) - L(w - h)) / 2h`` are
    rounding noise for any ``h`` small enough to be a derivative, so a correct
    model would fail the check.
    """
    return bool(_compute_dtypes(model) & set(HALF_FLOATS))


def _clone_in(model, dtype):
    """A copy of ``model`` computing in ``dtype`` with the same weights, or ``None`` if it cannot be cloned."""
    def clone_layer(layer):
        config = layer.get_config()
        config["dtype"] = dtype
        return layer.__class__.from_config(config)

    try:
        clone = keras.models.clone_model(model, clone_function=clone_layer)
        if not clone.built:
            clone.build(model.input_shape)
        weights = model.get_weights()
        clone.set_weights([np.asarray(w, dtype=dtype) if np.issubdtype(np.asarray(w).dtype, np.floating)
                           else w for w in weights])
    except Exception as error:  # noqa: BLE001 - any failure means: check in the model's own dtype
        logger.warning("gradient_check: cannot clone %s in %s (%s); checking in its own dtype",
                       model.name, dtype, error)
        return None
    if any(v.dtype != dtype for v in clone.trainable_variables) or _compute_dtypes(clone) & set(HALF_FLOATS):
        return None
    return clone


def _float64_clone(model):
    """A float64 copy of ``model`` with the same weights, or ``None`` if it cannot be cloned."""
    return _clone_in(model, "float64")


def _target(model, float64):
    """The model the check runs on: a float64 clone, else a float32 clone of a 16-bit model, else ``model``."""
    target = _float64_clone(model) if float64 else None
    if target is None and _computes_in_half(model):
        logger.warning("gradient_check: %s computes in 16 bits, where finite differences are rounding "
                       "noise; checking a float32 copy", model.name)
        target = _clone_in(model, "float32")
    if target is None:
        return model
    return target


def _tensor(array, dtype):
    """``array`` as a tensor of the current backend; floating arrays cast to ``dtype``."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(dtype)
    return keras.ops.convert_to_tensor(array)


def _targets_per_output(model, y) -> list:
    """``y`` as a list of one target array per output of ``model`` (one output: ``[y]``).

    A model with several outputs takes a list or tuple in the order of ``model.outputs``
    or a dict by output name; anything else is refused before any work.
    """
    outputs = len(getattr(model, "outputs", None) or ())
    if outputs <= 1:
        return [y]
    names = list(model.output_names)
    if isinstance(y, dict) and sorted(y) == sorted(names):
        return [y[name] for name in names]
    if isinstance(y, (list, tuple)) and len(y) == outputs:
        return list(y)
    received = (f"a dict with keys {sorted(y)}" if isinstance(y, dict) else
                f"a {type(y).__name__} of {len(y)}" if isinstance(y, (list, tuple)) else
                f"{type(y).__name__} of shape {np.shape(y)}")
    raise ValueError(f"Argument `y` must hold one target array per output of the model ({outputs}: "
                     f"{names}), a list in that order or a dict by output name. Received: y={received}")


def _check_arguments(model, loss, num_coordinates, epsilon, threshold, float64, seed,
                     abs_tolerance):
    """Validate the arguments; returns the loss function."""
    check_type("model", model, keras.Model)
    check_positive("num_coordinates", num_coordinates, integer=True)
    if epsilon is not None:
        check_positive("epsilon", epsilon)
    if threshold is not None:
        check_positive("threshold", threshold)
    check_non_negative("abs_tolerance", abs_tolerance)
    check_type("float64", float64, bool)
    check_type("seed", seed, int)
    check_seed("seed", seed)
    if isinstance(loss, (str, dict)) or loss is None:
        loss_fn = keras.losses.get(loss)
        if loss_fn is None:
            raise ValueError(f"Argument `loss` must be a loss. Received: loss={loss!r}")
        return loss_fn
    if callable(loss):
        return loss
    raise TypeError(f"Argument `loss` must be a loss identifier or a callable. Received: loss={loss!r}")


def _pick_coordinates(variables, num_coordinates, seed):
    """``[(variable index, flat index)]``: one coordinate of as many variables as allowed, then uniform."""
    rng = np.random.default_rng(seed)
    sizes = np.array([int(np.prod(v.shape)) for v in variables])
    chosen = [(int(i), int(rng.integers(sizes[i]))) for i in rng.permutation(len(variables))[:num_coordinates]]
    remaining = num_coordinates - len(chosen)
    if remaining > 0:
        bounds = np.cumsum(sizes)
        # the rest are distinct from each other and from those already chosen
        taken = {int(bounds[i - 1] if i else 0) + f for i, f in chosen}
        total = int(sizes.sum())
        draw = rng.choice(total, size=min(remaining + len(taken), total), replace=False)
        flat = [int(f) for f in draw if int(f) not in taken][:remaining]
        for f in flat:
            i = int(np.searchsorted(bounds, f, side="right"))
            chosen.append((i, int(f - (bounds[i - 1] if i else 0))))
    return chosen


def _check_coordinate(variable, flat_index, grad, loss_value, h, abs_tolerance):
    """The central difference ``(f(w + h e) - f(w - h e)) / 2h`` at one coordinate, against ``grad``."""
    index = tuple(int(k) for k in np.unravel_index(flat_index, tuple(variable.shape)))
    original = variable.numpy() if hasattr(variable, "numpy") else keras.ops.convert_to_numpy(variable)
    try:
        plus, minus = original.copy(), original.copy()
        plus[index] += h
        minus[index] -= h
        variable.assign(plus)
        f_plus = float(loss_value())
        variable.assign(minus)
        f_minus = float(loss_value())
    finally:
        variable.assign(original)
    numeric = (f_plus - f_minus) / (2 * h)
    analytic = float(keras.ops.convert_to_numpy(grad)[index])
    scale = max(abs(analytic), abs(numeric))
    rel = 0.0 if scale < abs_tolerance else abs(analytic - numeric) / scale
    return CoordinateCheck(weight=variable.path, index=index, analytic=analytic, numeric=numeric,
                           relative_error=rel)


def gradient_check(model: keras.Model, x, y, loss, num_coordinates: int = 20, *,
                   epsilon: float | None = None, threshold: float | None = None,
                   float64: bool = True, seed: int = 0,
                   abs_tolerance: float = 1e-12) -> GradientCheckResult:
    """Compare automatic gradients with central finite differences on random coordinates.

    The model is cloned in float64 (each layer rebuilt with ``dtype="float64"``,
    weights copied) unless ``float64=False``, cloning fails or Keras does not
    compute in float64 on this backend (its type promotion turns float64 into
    float32 on JAX and PyTorch): then the check runs in the model's own dtype,
    with the float32 step and threshold, and a warning says so. A model that
    computes in 16 bits (``mixed_float16``, ``float16``, ``bfloat16``) is then
    checked as a float32 clone instead: a 16-bit loss has about 3 significant
    digits, and its central differences are rounding noise (a correct model
    would fail). ``model`` itself is never modified. Runs on every Keras
    backend (the gradient through ``keras_trainkit.utils.gradients``). The loss
    is ``mean(loss(y, model(x, training=False)))`` (dropout off), and for a model
    with several outputs the sum of that over the outputs, as ``compile(loss=...)``
    with one loss does; a
    ``keras.losses.Loss`` instance is evaluated through its unreduced ``call``
    so that it runs in the model's dtype. Every trainable variable gets at least one coordinate while
    ``num_coordinates`` allows, the rest are drawn uniformly over all
    parameters.

    Args:
        model: the model to check (a functional, Sequential or subclassed model;
            subclassed ones run in their own dtype unless they clone).
        x: an input batch (keep it small).
        y: the targets; for a model with several outputs one array per output, a
            list in the order of ``model.outputs`` or a dict by output name.
        loss: a Keras loss identifier/instance or a callable ``loss(y_true, y_pred)``.
        num_coordinates: how many weight coordinates to check (positive integer).
        epsilon: the finite-difference step ``h`` (default ``1e-6`` in float64,
            ``5e-3`` in float32).
        threshold: the pass threshold on the maximum relative error (default
            ``1e-6`` in float64, ``5e-2`` in float32, a coarse check).
        float64: run in float64 when the model allows.
        seed: seed of the coordinate choice.
        abs_tolerance: gradients below this in both estimates count as agreeing.

    Returns:
        a :class:`GradientCheckResult` (``print(result)`` for a summary).

    Example:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="tanh")])
        >>> x, y = np.ones((4, 3)), np.zeros((4, 2))
        >>> gradient_check(model, x, y, "mse", num_coordinates=5).passed
        True
    """
    loss_fn = _check_arguments(model, loss, num_coordinates, epsilon, threshold, float64, seed,
                               abs_tolerance)
    targets = _targets_per_output(model, y)
    if float64 and not _computes_in_float64():
        logger.warning("gradient_check: Keras computes float64 in float32 on the %s backend; "
                       "checking %s in its own dtype with the float32 step and threshold",
                       keras.backend.backend(), model.name)
        float64 = False
    target = _target(model, float64)
    variables = list(target.trainable_variables)
    if not variables:
        raise ValueError(f"Argument `model` has no trainable weights. Received: model={model.name!r}")
    dtype = str(variables[0].dtype)
    wide = dtype == "float64"
    h = epsilon if epsilon is not None else (1e-6 if wide else 5e-3)
    limit = threshold if threshold is not None else (1e-6 if wide else 5e-2)
    x_in = keras.tree.map_structure(lambda a: _tensor(a, dtype), x)
    y_in = [_tensor(part, dtype) for part in targets]
    half = sorted(_compute_dtypes(target) & set(HALF_FLOATS))
    if half:  # the float32 clone failed: say which dtype the numbers come from
        logger.warning("gradient_check: %s computes in %s; the finite differences are unreliable",
                       model.name, half[0])

    # A keras.losses.Loss computes in its own dtype (float32): call its unreduced ``call``.
    per_example = loss_fn.call if isinstance(loss_fn, keras.losses.Loss) else loss_fn

    def loss_value():
        prediction = target(x_in, training=False)
        if isinstance(prediction, dict):
            predictions = [prediction[name] for name in target.output_names]
        else:
            predictions = list(prediction) if len(y_in) > 1 else [prediction]
        return sum(keras.ops.mean(keras.ops.cast(per_example(part, output), dtype))
                   for part, output in zip(y_in, predictions))

    _, _, grads = value_and_gradients(lambda: (loss_value(), None), variables)

    chosen = _pick_coordinates(variables, num_coordinates, seed)
    checks = [_check_coordinate(variables[i], flat_index, grads[i], loss_value, h, abs_tolerance)
              for i, flat_index in chosen]
    checks.sort(key=lambda c: c.relative_error, reverse=True)
    worst = checks[0].relative_error if checks else 0.0
    result = GradientCheckResult(max_relative_error=worst, threshold=limit, passed=worst < limit,
                                 dtype=half[0] if half else dtype, coordinates=checks)
    logger.info("%s", result)
    return result


__all__ = ["CoordinateCheck", "GradientCheckResult", "gradient_check"]
