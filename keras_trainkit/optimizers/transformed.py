"""``TransformedOptimizer``: gradient transforms chained in front of any Keras optimizer."""

from __future__ import annotations

import keras

from keras_trainkit.optimizers._registry import register
from keras_trainkit.optimizers.transforms import GradientChain
from keras_trainkit.optimizers.wrapper import OptimizerWrapper


@register
class TransformedOptimizer(OptimizerWrapper):
    """Apply gradient transforms in order, then any Keras optimizer.

    ``g <- T_k(... T_1(g))``, then ``w <- inner(w, g)``, run by
    :class:`~keras_trainkit.optimizers.transforms.GradientChain` (the same
    runner the Trainer and the callbacks use). A skipping transform
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
        chain = GradientChain(transforms)
        super().__init__(optimizer, loss_scale_factor=loss_scale_factor, name=name, **kwargs)
        self.chain = chain

    @property
    def transforms(self):
        """The transforms, in the order they are applied."""
        return list(self.chain.transforms)

    def build(self, variables):
        super().build(variables)
        with keras.name_scope(self.name, caller=self):
            self.chain.build(variables)
            for variable in self.chain.variables:
                self._track_variable(variable)

    def get_statistics(self):
        """``{"<transform name>/<statistic>": float}`` of every transform (for logs)."""
        return self.chain.get_statistics()

    def wrapped_apply(self, grads, variables):
        self.chain.apply(
            grads,
            variables,
            update=lambda g: self.apply_inner(g, variables),
            run_if=lambda pred, fn, g: self.run_if(pred, lambda gg, _: fn(gg), g, variables),
        )

    def finalize_variable_values(self, var_list):
        super().finalize_variable_values(var_list)
        self.chain.raise_if_stopped()

    def get_config(self):
        config = super().get_config()
        config["transforms"] = [keras.saving.serialize_keras_object(t) for t in self.chain.transforms]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["transforms"] = [
            keras.saving.deserialize_keras_object(t, custom_objects=custom_objects) if isinstance(t, dict) else t
            for t in config.get("transforms") or []
        ]
        return super().from_config(config, custom_objects=custom_objects)
