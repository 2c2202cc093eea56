"""Small reference architectures for the embedded data sets.

The CLI commands (``demo``, ``lr-find``, ``check-init``, ``tune``), the examples
and the benchmarks build their models here, so one name means one network
everywhere. Every builder returns an uncompiled functional ``keras.Model``
whose last layer emits logits (use ``from_logits=True`` losses).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_trainkit.utils.validation import check_in, check_positive, check_probability


def mlp(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    depth: int = 2,
    width: int = 256,
    activation: str = "relu",
    batch_norm: bool = False,
    dropout: float = 0.0,
    kernel_initializer="glorot_uniform",
    kernel_regularizer=None,
    name: str = "mlp",
) -> keras.Model:
    """A multilayer perceptron: ``depth`` hidden Dense layers of ``width`` units.

    Hidden layers are named ``dense_0 ... dense_{depth-1}``, the classifier
    ``logits``. Inputs of any rank are flattened first.

    Example:
        >>> model = mlp((40,), 10, depth=3, width=64)
        >>> model.output_shape
        (None, 10)
    """
    check_positive("depth", depth, integer=True)
    check_positive("width", width, integer=True)
    check_positive("num_classes", num_classes, integer=True)
    check_probability("dropout", dropout)
    inputs = keras.Input(tuple(input_shape), name="inputs")
    x = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    for i in range(int(depth)):
        x = keras.layers.Dense(
            width,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            use_bias=not batch_norm,
            name=f"dense_{i}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(activation, name=f"act_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=kernel_initializer,
                                 name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def cnn(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    filters: Sequence[int] = (32, 64, 64),
    kernel_size: int = 5,
    dense_units: int = 128,
    activation: str = "relu",
    batch_norm: bool = True,
    dropout: float = 0.0,
    kernel_initializer="he_normal",
    kernel_regularizer=None,
    name: str = "cnn",
) -> keras.Model:
    """A small convolutional network: 1-D for ``(length,)`` or ``(length, channels)``
    inputs (MNIST-1D), 2-D for ``(height, width, channels)`` inputs (digits).

    Each block is Conv -> (BatchNorm) -> activation; blocks after the first
    downsample with stride 2. Global average pooling, one hidden Dense layer
    and a ``logits`` layer follow.

    Example:
        >>> model = cnn((40,), 10)
        >>> model.output_shape
        (None, 10)
    """
    check_positive("num_classes", num_classes, integer=True)
    check_positive("kernel_size", kernel_size, integer=True)
    check_positive("dense_units", dense_units, integer=True)
    check_probability("dropout", dropout)
    if not filters:
        raise ValueError(f"Argument `filters` must name at least one block. Received: filters={filters!r}")
    for f in filters:
        check_positive("filters", f, integer=True)
    rank = len(input_shape)
    check_in("len(input_shape)", rank, (1, 2, 3))
    inputs = keras.Input(tuple(input_shape), name="inputs")
    x = inputs
    if rank == 1:
        x = keras.layers.Reshape((input_shape[0], 1), name="add_channel")(x)
    conv = keras.layers.Conv2D if rank == 3 else keras.layers.Conv1D
    pool = keras.layers.GlobalAveragePooling2D if rank == 3 else keras.layers.GlobalAveragePooling1D
    size = min(kernel_size, 3) if rank == 3 else kernel_size
    for i, f in enumerate(filters):
        x = conv(
            f,
            size,
            strides=1 if i == 0 else 2,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            name=f"conv_{i}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(activation, name=f"act_{i}")(x)
    x = pool(name="pool")(x)
    x = keras.layers.Dense(dense_units, activation=activation, kernel_initializer=kernel_initializer,
                           kernel_regularizer=kernel_regularizer, name="dense")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


BUILDERS = {"mlp": mlp, "cnn": cnn}
"""The reference architectures by name: ``{"mlp": mlp, "cnn": cnn}``."""


def build(name: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> keras.Model:
    """Build a reference architecture by name (``"mlp"`` or ``"cnn"``)."""
    check_in("model", name, BUILDERS)
    return BUILDERS[name](input_shape, num_classes, **kwargs)


__all__ = ["BUILDERS", "build", "cnn", "mlp"]
