"""Layer-sequential unit-variance (LSUV) initialization of Mishkin & Matas (2016)."""

from __future__ import annotations

import logging

import keras

from keras_trainkit._compat.keras import nested_layers
import numpy as np

from keras_trainkit.utils.validation import SEED_MAX, check_model_batch, check_positive, check_seed, check_type

logger = logging.getLogger(__name__)

_KERNEL_LAYERS = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
)


def kernel_layers(model: keras.Model) -> list:
    """The Dense and convolution layers of a flat ``model``, in forward order.

    Raises ``ValueError`` for a nested model holding such layers (flatten it first).
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and any(
            isinstance(sub, _KERNEL_LAYERS) for sub in nested_layers(layer)
        ):
            raise ValueError(
                "Nested models are not supported; build one flat functional or Sequential "
                f"model. Received: model={model.name!r} containing model {layer.name!r}"
            )
        if isinstance(layer, _KERNEL_LAYERS):
            found.append(layer)
    return found


def _check_graph_model(model, name="model"):
    check_type(name, model, keras.Model)
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"Argument `{name}` must be a built functional or Sequential model (its layer "
            f"outputs are needed). Received: {name}={model.name!r}"
        )


def _pre_activation_output(model, layer, x):
    """The layer's output before its fused activation, on the batch ``x``, as float64
    (NumPy sums a bfloat16 array in bfloat16: its ``np.var`` came out about half the
    true variance under a ``mixed_bfloat16`` policy)."""
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    probe = keras.Model(inputs, layer.output)
    activation = getattr(layer, "activation", None)
    linear = keras.activations.get("linear")
    if activation is not None:
        layer.activation = linear
    try:
        return keras.ops.convert_to_numpy(probe(x, training=False)).astype("float64")
    finally:
        if activation is not None:
            layer.activation = activation


def lsuv_initialize(model: keras.Model, x_batch, tol: float = 0.1, max_iter: int = 10,
                    seed: int | None = None) -> dict[str, float]:
    """Initialize ``model`` in place with LSUV and return each layer's output variance.

    Mishkin & Matas (2016), Algorithm 1: every Dense/convolution kernel first gets
    an orthogonal start (``keras.initializers.Orthogonal``); then, layer by layer
    in forward order, the batch ``x_batch`` is passed through the network and the
    kernel is divided by the standard deviation of the layer's output,

        W_l <- W_l / sqrt(Var(B_l)),

    until ``|Var(B_l) - 1| < tol`` or ``max_iter`` passes. ``B_l`` is the layer's
    pre-activation output (a fused ``activation=`` is bypassed while measuring),
    the variance is over every element of the batch output. Biases are left
    unchanged. Works on flat functional and Sequential models.

    Args:
        model: a built functional or Sequential ``keras.Model``.
        x_batch: a batch of real inputs (a few hundred examples is plenty): an array,
            or for a model with several inputs a list or dict of arrays.
        tol: tolerance on the output variance (> 0).
        max_iter: maximum rescaling passes per layer (positive integer).
        seed: seed of the orthogonal start (an integer in ``[0, 2**32 - 1]``, or
            ``None``); layer ``i`` (in forward order) uses ``(seed + i) mod 2**32``.

    Returns:
        ``{layer name: output variance after initialization}``.

    Example:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        ...                           keras.layers.Dense(4)])
        >>> variances = lsuv_initialize(model, np.random.default_rng(0).normal(size=(256, 8)))
        >>> all(abs(v - 1) < 0.1 for v in variances.values())
        True

    Reference:
        D. Mishkin, J. Matas, "All you need is a good init", ICLR 2016.
    """
    _check_graph_model(model)
    check_positive("tol", tol)
    check_positive("max_iter", max_iter, integer=True)
    seed = check_seed("seed", seed)
    x, _ = check_model_batch("x_batch", x_batch, model, minimum=2, finite=True)
    layers = kernel_layers(model)
    if not layers:
        raise ValueError(
            f"Argument `model` has no Dense or convolution layer to initialize. Received: model={model.name!r}"
        )
    variances: dict[str, float] = {}
    for index, layer in enumerate(layers):
        kernel = layer.kernel
        layer_seed = None if seed is None else (seed + index) % (SEED_MAX + 1)
        orthogonal = keras.initializers.Orthogonal(seed=layer_seed)
        # Drawn in float32 (at least): the QR behind it has no float16/bfloat16 kernel.
        draw_dtype = "float64" if kernel.dtype == "float64" else "float32"
        start = orthogonal(tuple(kernel.shape), dtype=draw_dtype)
        kernel.assign(keras.ops.cast(start, kernel.dtype))
    for layer in layers:
        variance = float("nan")
        for iteration in range(int(max_iter)):
            variance = float(np.var(_layer_output(model, layer, x)))
            if not np.isfinite(variance) or variance <= 0:
                raise ValueError(
                    f"LSUV cannot rescale layer {layer.name!r}: its output variance is {variance}. "
                    "Received: x_batch that gives a constant output"
                )
            if abs(variance - 1.0) < tol:
                break
            layer.kernel.assign(layer.kernel / np.sqrt(variance).astype(layer.kernel.dtype))
        else:
            variance = float(np.var(_layer_output(model, layer, x)))
        logger.info("LSUV %s: output variance %.4f after %d pass(es)", layer.name, variance, iteration + 1)
        variances[layer.name] = variance
    return variances


def _layer_output(model, layer, x):
    return _pre_activation_output(model, layer, x)
