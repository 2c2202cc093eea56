"""What to try when a fresh model's signal shrinks or grows with depth: advice that
names what the model does not already do.

The scale-preserving choice depends on the activation (course notes, "where to
start"): He (``Var(W) = 2 / fan_in``) for ReLU-like units, which zero half their
inputs; Glorot (``2 / (fan_in + fan_out)``) or LeCun (``1 / fan_in``) for tanh,
sigmoid and linear units; LeCun normal for SELU, whose self-normalizing fixed
point (mean 0, variance 1) needs ``fan_in Var(W) = 1`` (Klambauer et al.,
"Self-Normalizing Neural Networks", 2017). LSUV (Mishkin & Matas 2016)
measures instead of assuming. When the model already uses the right one, the
remaining levers are normalization layers and residual connections.
"""

from __future__ import annotations

import keras

_RELU_LIKE = {"relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "swish", "mish"}

#: Names shown in the advice, with the identifier to use.
HE = "He (he_normal)"
GLOROT = "Glorot (glorot_uniform)"
LECUN = "LeCun (lecun_normal)"
LSUV = "LSUV (keras_trainkit.initializers.lsuv_initialize)"
NORMALIZATION = "normalization layers (BatchNormalization/LayerNormalization)"
RESIDUAL = "residual connections"


def initializer_family(initializer) -> str:
    """``"He"``, ``"Glorot"``, ``"LeCun"``, ``"orthogonal"`` or the class name of a
    Keras initializer (a ``VarianceScaling`` is named by its scale and mode)."""
    if isinstance(initializer, keras.initializers.VarianceScaling):
        scale, mode = float(initializer.scale), initializer.mode
        if scale == 2.0 and mode == "fan_in":
            return "He"
        if scale == 1.0 and mode == "fan_avg":
            return "Glorot"
        if scale == 1.0 and mode == "fan_in":
            return "LeCun"
    if isinstance(initializer, keras.initializers.Orthogonal):
        return "orthogonal"
    return type(initializer).__name__


def _activation_names(layers) -> set[str]:
    names = set()
    for layer in layers:
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", None)
        if isinstance(layer, keras.layers.ReLU):
            name = "relu"
        if name and name != "linear":
            names.add(name)
    return names


def scale_advice(layers, kernel_layers, initialized_with: str | None = None) -> str:
    """What to try, as the end of a sentence ("try ..."), given the model's
    activations and its kernels' initializers (or ``initialized_with``, e.g.
    ``"lsuv"``, when the layers cannot tell)."""
    if initialized_with is not None:
        used = {"LSUV" if initialized_with.lower() == "lsuv" else initialized_with}
    else:
        used = {initializer_family(getattr(layer, "kernel_initializer", None))
                for layer in kernel_layers}
    scale_preserving, families, kind = _scale_preserving(_activation_names(layers))
    options = [option for option, names in ((scale_preserving, families), (LSUV, {"LSUV"}))
               if not names & used]
    if not options or "LSUV" in used:  # LSUV rescales whatever start it is given
        options = [NORMALIZATION, RESIDUAL]
    return (f"the kernels use {', '.join(sorted(used))} with {kind} activations; "
            f"try {' or '.join(options)}")


def _scale_preserving(activations):
    """``(advice, initializer families that preserve the scale, activation kind)`` for these activations."""
    if activations & _RELU_LIKE:
        return HE, {"He"}, "ReLU-like"
    if "selu" in activations:
        return LECUN, {"LeCun"}, "SELU"
    return GLOROT, {"Glorot", "LeCun"}, "tanh/sigmoid/linear"
