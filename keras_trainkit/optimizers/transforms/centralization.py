"""``GradientCentralization``: each kernel gradient re-centred on its output units."""

from __future__ import annotations

import re

from keras import ops

from keras_trainkit.optimizers.transforms._registry import register
from keras_trainkit.optimizers.transforms.base import GradientTransform, check_patterns
from keras_trainkit.utils.dtypes import float32_if_half
from keras_trainkit.utils.variables import variable_path, warn_unmatched_patterns


def _centralize(g):
    """``g - mean(g, axes=all but the last)``; float16/bfloat16 in float32, rounded once.

    In a low-precision dtype the mean itself would be rounded (to 8 significant
    bits in bfloat16) before the subtraction, which leaves every column off by
    that rounding, several times the error of rounding the exact result once.
    """
    wide = ops.cast(g, float32_if_half(g.dtype))
    axes = tuple(range(len(g.shape) - 1))
    return ops.cast(wide - ops.mean(wide, axis=axes, keepdims=True), g.dtype)


@register
class GradientCentralization(GradientTransform):
    """Center each kernel gradient on its output units' fan-in (zero mean).

    For a kernel of rank > 1 shaped ``(..., units)`` (Dense ``(in, out)``,
    Conv ``(kh, kw, in, out)``): ``G <- G - mean(G, axes=all but the last)``,
    i.e. every output unit's gradient column has zero mean. Biases and other
    rank <= 1 variables, and variables matching ``exclude``, are unchanged.

    Args:
        exclude: regular expressions searched in variable paths; matches are
            left unchanged (e.g. ``"embedding"``).
        name: the transform's name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import TransformedOptimizer, GradientCentralization
        >>> opt = TransformedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9), [GradientCentralization()])

    Paper: Yong, Huang, Hua & Zhang, "Gradient Centralization: A New
    Optimization Technique for Deep Neural Networks", ECCV 2020.
    """

    def __init__(self, exclude=(), name=None):
        super().__init__(name=name)
        self.exclude = check_patterns("exclude", exclude)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in self.exclude)) if self.exclude else None

    def build(self, variables):
        super().build(variables)
        warn_unmatched_patterns(type(self).__name__, "exclude", self.exclude, variables)

    def call(self, grads, variables):
        out = []
        for i, g in enumerate(grads):
            excluded = (
                self._pattern is not None
                and variables is not None
                and self._pattern.search(variable_path(variables[i])) is not None
            )
            if g is None or len(g.shape) <= 1 or excluded:
                out.append(g)
                continue
            out.append(_centralize(g))
        return out

    def get_config(self):
        return {**super().get_config(), "exclude": list(self.exclude)}

