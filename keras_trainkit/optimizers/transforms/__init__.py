"""Gradient transforms: small stateful maps ``(grads, variables) -> grads``.

Written once and used three ways: inside ``TransformedOptimizer`` (``model.fit``),
by a callback, and in a custom training loop, always through one runner,
:class:`GradientChain`. See ``base.GradientTransform`` for the protocol
(``build``, ``t(grads, variables)``, ``statistics``), ``skipping.SkipTransform``
for transforms that skip a step, and docs/gradient_transforms.md.
"""

from keras_trainkit.optimizers.transforms._registry import REGISTRY
from keras_trainkit.optimizers.transforms.base import GradientTransform, global_norm
from keras_trainkit.optimizers.transforms.clipping import (
    AdaptiveGradientClipping,
    AutoClip,
    ClipByGlobalNorm,
    ClipByValue,
    unitwise_norm,
)
from keras_trainkit.optimizers.transforms.centralization import GradientCentralization
from keras_trainkit.optimizers.transforms.chain import GradientChain
from keras_trainkit.optimizers.transforms.large_updates import SkipLargeUpdates
from keras_trainkit.optimizers.transforms.noise import GradientNoise
from keras_trainkit.optimizers.transforms.skipping import (
    NonFiniteGradientError,
    SkipNonFinite,
    SkipTransform,
    all_finite,
)


def get(identifier, **kwargs):
    """Return a gradient transform from a name, a config dict or an instance.

    Names are matched case-insensitively in class-name, snake_case or alias
    form (``"ClipByGlobalNorm"``, ``"clip_by_global_norm"``, ``"agc"``);
    ``kwargs`` go to the constructor when a name is given.

    Example:
        >>> from keras_trainkit.optimizers import transforms
        >>> transforms.get("clip_by_global_norm", max_norm=2.0).max_norm
        2.0
    """
    return REGISTRY.get(identifier, **kwargs)


__all__ = [
    "AdaptiveGradientClipping",
    "AutoClip",
    "ClipByGlobalNorm",
    "ClipByValue",
    "GradientCentralization",
    "GradientChain",
    "GradientNoise",
    "GradientTransform",
    "NonFiniteGradientError",
    "SkipLargeUpdates",
    "SkipNonFinite",
    "SkipTransform",
    "all_finite",
    "get",
    "global_norm",
    "unitwise_norm",
]
