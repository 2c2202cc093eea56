"""The geometric-mean fan initializer of Defazio & Bottou (2019)."""

from __future__ import annotations

import math
import random

import keras

from keras_trainkit.initializers._registry import register
from keras_trainkit.utils.validation import check_in, check_positive, check_seed


def compute_fans(shape) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a kernel shape, with Keras's conventions.

    A Dense kernel ``(fan_in, fan_out)``; a convolution kernel
    ``(*spatial, in_channels, out_channels)`` has ``fan_in = receptive * in`` and
    ``fan_out = receptive * out``; a vector ``(n,)`` has ``fan_in = fan_out = n``.

    Example:
        >>> compute_fans((3, 3, 16, 32))
        (144, 288)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


@register(aliases=("geometric_fan", "geometric"))
class GeometricFan(keras.initializers.Initializer):
    """Zero-mean weights with variance ``scale / sqrt(fan_in * fan_out)``.

    Glorot uses the arithmetic mean of the fans, ``2 / (fan_in + fan_out)``, He
    uses ``fan_in`` alone; Defazio & Bottou (2019) argue for the geometric mean:

        Var(w) = c / sqrt(fan_in * fan_out)

    drawn either from ``N(0, Var)`` (``distribution="normal"``) or from
    ``U(-a, a)`` with ``a = sqrt(3 * Var)`` (``distribution="uniform"``). With
    ``c = 2`` (the default) it equals He initialization for square ReLU layers.
    Fans follow Keras: a convolution kernel multiplies both by the receptive field.

    Args:
        scale: the constant ``c`` (> 0).
        distribution: ``"normal"`` or ``"uniform"``.
        seed: an integer in ``[0, 2**32 - 1]`` for reproducible draws (the
            same shape gives the same values on every call, like Keras's
            seeded initializers), or ``None`` for fresh values on every call.

    Example:
        >>> import keras
        >>> layer = keras.layers.Dense(64, kernel_initializer=GeometricFan(seed=0))

    Reference:
        A. Defazio, L. Bottou, "Scaling Laws for the Principled Design,
        Initialization and Preconditioning of ReLU Networks", arXiv:1906.04267, 2019.
    """

    def __init__(self, scale: float = 2.0, distribution: str = "normal", seed: int | None = None):
        check_positive("scale", scale)
        check_in("distribution", distribution, ("normal", "uniform"))
        seed = check_seed("seed", seed)
        self.scale = float(scale)
        self.distribution = distribution
        self.seed = seed

    def variance(self, shape) -> float:
        """The target variance ``scale / sqrt(fan_in * fan_out)`` for ``shape``."""
        fan_in, fan_out = compute_fans(shape)
        return self.scale / math.sqrt(max(1, fan_in) * max(1, fan_out))

    def __call__(self, shape, dtype=None):
        variance = self.variance(shape)
        seed = self.seed if self.seed is not None else random.randrange(2**31 - 1)
        if self.distribution == "normal":
            return keras.random.normal(shape, stddev=math.sqrt(variance), dtype=dtype, seed=seed)
        limit = math.sqrt(3.0 * variance)
        return keras.random.uniform(shape, minval=-limit, maxval=limit, dtype=dtype, seed=seed)

    def get_config(self):
        return {"scale": self.scale, "distribution": self.distribution, "seed": self.seed}
