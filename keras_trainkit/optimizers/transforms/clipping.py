"""Gradient clipping transforms: by global norm, by value, unit-wise adaptive, percentile."""

from __future__ import annotations

import math
import re

from keras import ops

from keras_trainkit.optimizers.transforms._registry import register
from keras_trainkit.optimizers.transforms.base import (
    GradientTransform,
    check_patterns,
    global_norm,
    multiply_in_float32,
    scale_grads,
)
from keras_trainkit.utils.validation import check_number, check_positive
from keras_trainkit.utils.variables import variable_path, warn_unmatched_patterns


class _ClippingTransform(GradientTransform):
    """Shared state of the clipping transforms: ``grad_norm`` and ``clip_fraction``."""

    def build(self, variables):
        super().build(variables)
        self.grad_norm = self.add_variable("grad_norm", statistic=True, per_step=True)
        self.clip_fraction = self.add_variable("clip_fraction", statistic=True, per_step=True)


def _clip_global(grads, norm, threshold):
    """Scale ``grads`` by ``threshold / norm`` where ``norm > threshold`` (norm, threshold float32)."""
    clipped = ops.greater(norm, threshold)
    scale = ops.where(clipped, threshold / ops.where(clipped, norm, 1.0), 1.0)
    # A non-finite norm propagates (NaN scale) instead of silently zeroing.
    scale = ops.where(ops.isfinite(norm), scale, norm)
    return scale_grads(grads, scale), ops.cast(clipped, "float32")


@register
class ClipByGlobalNorm(_ClippingTransform):
    """Rescale all gradients together so their global L2 norm is at most ``max_norm``.

    ``n = sqrt(sum_i ||g_i||^2)``; ``g_i <- g_i * max_norm / max(n, max_norm)``
    (unchanged when ``n <= max_norm``). Statistics: ``grad_norm`` (``n`` before
    clipping) and ``clip_fraction`` (1.0 when this step was clipped, else 0.0).

    Args:
        max_norm: the largest global norm allowed, > 0.
        name: the transform's name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import TransformedOptimizer, ClipByGlobalNorm
        >>> opt = TransformedOptimizer(keras.optimizers.SGD(0.1), [ClipByGlobalNorm(1.0)])

    Paper: Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent
    neural networks", ICML 2013.
    """

    def __init__(self, max_norm=1.0, name=None):
        super().__init__(name=name)
        self.max_norm = float(check_positive("max_norm", max_norm))

    def call(self, grads, variables):
        norm = global_norm(grads)
        grads, clipped = _clip_global(grads, norm, ops.cast(self.max_norm, "float32"))
        self.grad_norm.assign(norm)
        self.clip_fraction.assign(clipped)
        return grads

    def get_config(self):
        return {**super().get_config(), "max_norm": self.max_norm}


@register
class ClipByValue(_ClippingTransform):
    """Clip every gradient element into ``[-clip_value, clip_value]``.

    ``g <- min(max(g, -clip_value), clip_value)``. Statistics: ``grad_norm``
    (global norm before clipping) and ``clip_fraction`` (the fraction of
    gradient elements that were clipped this step).

    Args:
        clip_value: the bound, > 0.
        name: the transform's name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import TransformedOptimizer, ClipByValue
        >>> opt = TransformedOptimizer(keras.optimizers.SGD(0.1), [ClipByValue(0.5)])

    Paper: Mikolov, "Statistical language models based on neural networks",
    PhD thesis, 2012 (element-wise gradient clipping).
    """

    def __init__(self, clip_value=1.0, name=None):
        super().__init__(name=name)
        self.clip_value = float(check_positive("clip_value", clip_value))

    def call(self, grads, variables):
        self.grad_norm.assign(global_norm(grads))
        present = [g for g in grads if g is not None]
        total = sum(math.prod(g.shape) for g in present)
        clipped = ops.zeros((), "float32")
        out = []
        for g in grads:
            if g is None:
                out.append(None)
                continue
            bound = ops.cast(self.clip_value, g.dtype)
            clipped = clipped + ops.sum(ops.cast(ops.greater(ops.abs(g), bound), "float32"))
            out.append(ops.clip(g, -bound, bound))
        self.clip_fraction.assign(clipped / max(total, 1))
        return out

    def get_config(self):
        return {**super().get_config(), "clip_value": self.clip_value}


def unitwise_norm(x):
    """L2 norm per output unit: over all axes but the last for rank >= 2, whole tensor for rank <= 1.

    Keras kernels are shaped ``(..., units)`` (Dense ``(in, out)``, Conv
    ``(kh, kw, in, out)``), so each output unit's fan-in is one slice. The
    result keeps dims so it broadcasts against ``x``.
    """
    return ops.sqrt(_unitwise_sum_of_squares(x))


def _unitwise_sum_of_squares(x):
    """The square of :func:`unitwise_norm`."""
    x = ops.cast(x, "float32")
    rank = len(x.shape)
    axes = tuple(range(rank - 1)) if rank >= 2 else None
    return ops.sum(ops.square(x), axis=axes, keepdims=True)


@register(aliases=("agc",))
class AdaptiveGradientClipping(_ClippingTransform):
    """Unit-wise adaptive gradient clipping (AGC), as in the NFNets.

    For each unit ``i`` (an output unit of a kernel shaped ``(..., units)``:
    the norm runs over all but the last axis; a bias or other 1-D/scalar
    variable is one unit, its whole tensor), with ``||.||`` the L2 norm::

        max_i = clipping * max(||W_i||, eps)
        G_i  <- G_i * max_i / max(||G_i||, 1e-6)   if ||G_i|| > max_i, else G_i

    ``eps`` keeps zero-initialized weights (biases) trainable; the inner
    ``1e-6`` only guards the division. Variables whose path matches one of the
    ``exclude`` regular expressions (e.g. the final classifier, which the
    paper does not clip) pass through. Statistics: ``grad_norm`` (global norm
    before clipping) and ``clip_fraction`` (fraction of units clipped).

    Args:
        clipping: the largest allowed ratio ``||G_i|| / max(||W_i||, eps)``
            (``lambda`` in the paper; 0.01 to 0.16 there, smaller for larger
            batches), > 0.
        eps: the floor on the weight norm, > 0.
        exclude: regular expressions searched in variable paths
            (``"dense_2/"``, ``"classifier"``); matches are not clipped.
        name: the transform's name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import TransformedOptimizer, AdaptiveGradientClipping
        >>> agc = AdaptiveGradientClipping(0.01, exclude=["logits"])
        >>> opt = TransformedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9), [agc])

    Paper: Brock, De, Smith & Simonyan, "High-Performance Large-Scale Image
    Recognition Without Normalization", ICML 2021.
    """

    def __init__(self, clipping=0.01, eps=1e-3, exclude=(), name=None):
        super().__init__(name=name)
        self.clipping = float(check_positive("clipping", clipping))
        self.eps = float(check_positive("eps", eps))
        self.exclude = check_patterns("exclude", exclude)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in self.exclude)) if self.exclude else None

    def build(self, variables):
        super().build(variables)
        warn_unmatched_patterns(type(self).__name__, "exclude", self.exclude, variables)

    def is_excluded(self, variable):
        """Whether ``variable``'s path matches one of the ``exclude`` patterns."""
        return self._pattern is not None and self._pattern.search(variable_path(variable)) is not None

    def call(self, grads, variables):
        if variables is None:
            raise ValueError(
                "AdaptiveGradientClipping needs the variables the gradients belong to: "
                "call it as t(grads, variables). Received: variables=None"
            )
        clipping = ops.cast(self.clipping, "float32")
        units = 0
        clipped = ops.zeros((), "float32")
        out = []
        # The global norm (a diagnostic) reuses the unit-wise sums: one pass less.
        squares = []
        for g, w in zip(grads, variables):
            if g is None:
                out.append(g)
                continue
            if self.is_excluded(w):
                out.append(g)
                squares.append(ops.sum(ops.square(ops.cast(g, "float32"))))
                continue
            g_squares = _unitwise_sum_of_squares(g)
            squares.append(ops.sum(g_squares))
            g_norm = ops.sqrt(g_squares)
            max_norm = clipping * ops.maximum(unitwise_norm(w), self.eps)
            over = ops.greater(g_norm, max_norm)
            factor = ops.where(over, max_norm / ops.maximum(g_norm, 1e-6), 1.0)
            out.append(multiply_in_float32(g, factor))
            units += math.prod(g_norm.shape)
            clipped = clipped + ops.sum(ops.cast(over, "float32"))
        self.grad_norm.assign(ops.sqrt(ops.sum(ops.stack(squares))) if squares
                              else ops.zeros((), "float32"))
        self.clip_fraction.assign(clipped / max(units, 1))
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "clipping": self.clipping,
            "eps": self.eps,
            "exclude": list(self.exclude),
        }


@register
class AutoClip(_ClippingTransform):
    """Clip the global norm at the ``percentile``-th percentile of the norms seen so far.

    At step ``t`` with global norm ``n_t``, the history ``H`` holds the last
    ``history_size`` finite norms including ``n_t``; the threshold is
    ``c_t = percentile(H, p)`` (linear interpolation between order statistics,
    numpy's default) and ``g <- g * c_t / n_t`` when ``n_t > c_t``.

    Bounded memory: ``H`` is a ring buffer of ``history_size`` float32 values in
    a variable (saved and checkpointed), so the percentile covers a sliding
    window of the most recent norms instead of the paper's unbounded history;
    with ``history_size`` >= the number of steps the two agree exactly.
    Non-finite norms are not recorded; as in ``ClipByGlobalNorm``, a
    non-finite norm makes every gradient non-finite (the scale is the norm
    itself, never a silent zero), for ``SkipNonFinite`` or loss scaling to
    handle. Statistics: ``grad_norm``,
    ``clip_fraction`` (1.0 when clipped) and ``threshold`` (``c_t``).

    Args:
        percentile: ``p`` in [0, 100]; the paper recommends 10.
        history_size: how many recent norms are kept, >= 1.
        name: the transform's name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import TransformedOptimizer, AutoClip
        >>> opt = TransformedOptimizer(keras.optimizers.Adam(1e-3), [AutoClip(10.0)])

    Paper: Seetharaman, Wichern, Pardo & Le Roux, "AutoClip: Adaptive Gradient
    Clipping for Source Separation Networks", IEEE MLSP 2020.
    """

    def __init__(self, percentile=10.0, history_size=1000, name=None):
        super().__init__(name=name)
        self.percentile = float(check_number("percentile", percentile, minimum=0.0, maximum=100.0))
        self.history_size = int(check_number("history_size", history_size, minimum=1, integer=True))

    def build(self, variables):
        super().build(variables)
        self.history = self.add_variable("history", shape=(self.history_size,))
        self.count = self.add_variable("count", dtype="int32")
        self.threshold = self.add_variable("threshold", statistic=True, per_step=True)

    def call(self, grads, variables):
        norm = global_norm(grads)
        finite = ops.isfinite(norm)
        size = self.history_size
        # The state as tensors: JAX refuses Keras variables inside ops.where.
        previous_count = ops.convert_to_tensor(self.count)
        slot = ops.mod(previous_count, size)
        history = ops.where(
            ops.logical_and(finite, ops.equal(ops.arange(size, dtype="int32"), slot)),
            ops.where(finite, norm, 0.0),
            ops.convert_to_tensor(self.history),
        )
        count = previous_count + ops.cast(finite, "int32")
        filled = ops.minimum(count, size)
        # Unfilled slots sort last (+inf) so the first `filled` order statistics are the history.
        valid = ops.less(ops.arange(size, dtype="int32"), filled)
        ordered = ops.sort(ops.where(valid, history, float("inf")))
        position = ops.cast(self.percentile / 100.0, "float32") * ops.cast(ops.maximum(filled - 1, 0), "float32")
        low = ops.floor(position)
        frac = position - low
        low_i = ops.cast(low, "int32")
        high_i = ops.minimum(low_i + 1, ops.maximum(filled - 1, 0))
        v_low = ops.take(ordered, low_i)
        v_high = ops.take(ordered, high_i)
        threshold = v_low + (v_high - v_low) * frac
        threshold = ops.where(ops.greater(filled, 0), threshold, float("inf"))
        threshold = ops.where(finite, threshold, norm)
        out, clipped = _clip_global(grads, norm, threshold)
        self.history.assign(history)
        self.count.assign(count)
        self.threshold.assign(threshold)
        self.grad_norm.assign(norm)
        self.clip_fraction.assign(clipped)
        return out

    def get_config(self):
        return {**super().get_config(), "percentile": self.percentile, "history_size": self.history_size}
