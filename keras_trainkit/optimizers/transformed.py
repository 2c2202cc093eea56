"""``TransformedOptimizer``: gradient transforms chained in front of any Keras optimizer."""

from __future__ import annotations

import keras

from keras_trainkit.optimizers._registry import register
from keras_trainkit.optimizers.transforms import REGISTRY as TRANSFORMS
from keras_trainkit.optimizers.transforms import GradientTransform
from keras_trainkit.optimizers.wrapper import OptimizerWrapper


def _resolve_transforms(transforms):
    if transforms is None:
        return []
    if isinstance(transforms, (GradientTransform, str, dict)):
        transforms = [transforms]
    if not isinstance(transforms, (list, tuple)):
        raise TypeError(
            "Argument `transforms` must be a list of gradient transforms (instances, names or "
            f"config dicts). Received: transforms={transforms!r}"
        )
    resolved = []
    for item in transforms:
        if not isinstance(item, (GradientTransform, str, dict)):
            raise TypeError(
                "Argument `transforms` must hold GradientTransform instances, names or config "
                f"dicts. Received: transforms={transforms!r}"
            )
        resolved.append(TRANSFORMS.get(item))
    names = [t.name for t in resolved]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            "Argument `transforms` must have distinct names (give each a `name=`). "
            f"Received: transforms={resolved!r}"
        )
    return resolved


@register
class TransformedOptimizer(OptimizerWrapper):
    """Apply gradient transforms in order, then any Keras optimizer.

    ``g <- T_k(... T_1(g))``, then ``w <- inner(w, g)``. A gating transform
    (``SkipNonFinite``) decides whether the rest of the chain and the inner
    step run: a skipped step leaves the weights, the inner slots, the later
    transforms' state and ``iterations`` unchanged. Transform state is part of
    ``optimizer.variables`` (saved by ``model.save`` and checkpoints); the
    config holds the inner optimizer and the transforms. Under
    ``tf.distribute`` the transforms see the all-reduced (global) gradient.

    Args:
        optimizer: the inner optimizer: a ``keras.optimizers.Optimizer``
            (built-in or keras_trainkit), a name or a config dict.
        transforms: a list of ``GradientTransform`` instances, names or config
            dicts, applied first to last; names must be distinct.
        loss_scale_factor: optional static loss scale (see ``OptimizerWrapper``).
        name: the optimizer's name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import TransformedOptimizer, SkipNonFinite, ClipByGlobalNorm
        >>> opt = TransformedOptimizer(keras.optimizers.AdamW(1e-3), [SkipNonFinite(), ClipByGlobalNorm(1.0)])
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=opt, loss="mse")

    Paper: the composition follows optax's ``chain`` (Babuschkin et al., "The
    DeepMind JAX Ecosystem", 2020); each transform cites its own paper.
    """

    def __init__(self, optimizer, transforms=None, loss_scale_factor=None, name=None, **kwargs):
        resolved = _resolve_transforms(transforms)
        super().__init__(optimizer, loss_scale_factor=loss_scale_factor, name=name, **kwargs)
        self._transforms = tuple(resolved)

    @property
    def transforms(self):
        """The transforms, in the order they are applied."""
        return list(self._transforms)

    def build(self, variables):
        super().build(variables)
        with keras.name_scope(self.name, caller=self):
            for transform in self._transforms:
                if not transform.built:
                    transform.build(list(variables))
                for variable in transform.variables:
                    self._track_variable(variable)

    def get_statistics(self):
        """``{"<transform name>/<statistic>": float}`` of every transform (for logs)."""
        return {
            f"{t.name}/{key}": value for t in self._transforms for key, value in t.get_statistics().items()
        }

    def wrapped_apply(self, grads, variables):
        self._chain(0, grads, variables)

    def _chain(self, start, grads, variables):
        for index in range(start, len(self._transforms)):
            transform = self._transforms[index]
            pred = transform.gate(grads, variables)
            grads = transform(grads, variables)
            if pred is not None:
                self.run_if(pred, lambda g, v, i=index: self._chain(i + 1, g, v), grads, variables)
                return
        self.apply_inner(grads, variables)

    def finalize_variable_values(self, var_list):
        super().finalize_variable_values(var_list)
        for transform in self._transforms:
            check = getattr(transform, "raise_if_exhausted", None)
            if check is not None:
                check()

    def get_config(self):
        config = super().get_config()
        config["transforms"] = [keras.saving.serialize_keras_object(t) for t in self._transforms]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["transforms"] = [
            keras.saving.deserialize_keras_object(t, custom_objects=custom_objects) if isinstance(t, dict) else t
            for t in config.get("transforms") or []
        ]
        return super().from_config(config, custom_objects=custom_objects)
