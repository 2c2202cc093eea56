"""Architecture spaces: the model's shape as hyperparameters.

Each space's ``build(hp, input_shape, num_classes, **layer_kwargs)`` registers
its hyperparameters and returns an uncompiled ``keras.Model`` whose output is
``num_classes`` logits; ``layer_kwargs`` (``kernel_initializer``, ``dropout``,
``kernel_regularizer``) come from the recipe's initializer and regularization
spaces. Any object with such a ``build`` method, or a plain function of
``(hp, input_shape, num_classes)``, can stand in for them in
:class:`~keras_trainkit.tuning.RecipeHyperModel`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_trainkit import models
from keras_trainkit.tuning.spaces import Param, Space, _choice


class MLPSpace(Space):
    """An MLP (``keras_trainkit.models.mlp``): depth, width, activation, batch norm."""

    def __init__(self, depth: tuple[int, int] = (1, 4), widths: Sequence[int] = (64, 128, 256, 512),
                 activations: Sequence[str] = ("relu", "gelu", "tanh"), batch_norm: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.depth, self.widths, self.activations = depth, tuple(widths), tuple(activations)
        self.batch_norm = batch_norm

    def build(self, hp, input_shape, num_classes, **layer_kwargs) -> keras.Model:
        """Register the architecture's hyperparameters and build the model."""
        return models.mlp(
            input_shape, num_classes,
            depth=self._value(hp, "depth", Param("int", 2, *self.depth)),
            width=self._value(hp, "width", _choice(self.widths, 256 if 256 in self.widths else None)),
            activation=self._value(hp, "activation", _choice(self.activations)),
            batch_norm=self._value(hp, "batch_norm", Param("bool", False)) if self.batch_norm else False,
            **layer_kwargs,
        )


class CNNSpace(Space):
    """A 1-D/2-D CNN (``keras_trainkit.models.cnn``): blocks, base filters, kernel size,
    dense units, activation, batch norm. Block ``i`` has ``filters * 2**min(i, 1)`` filters."""

    def __init__(self, blocks: tuple[int, int] = (2, 4), filters: Sequence[int] = (16, 32, 64),
                 kernel_sizes: Sequence[int] = (3, 5, 7), dense_units: Sequence[int] = (64, 128, 256),
                 activations: Sequence[str] = ("relu", "gelu"), batch_norm: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.blocks, self.filters = blocks, tuple(filters)
        self.kernel_sizes, self.dense_units = tuple(kernel_sizes), tuple(dense_units)
        self.activations, self.batch_norm = tuple(activations), batch_norm

    def build(self, hp, input_shape, num_classes, **layer_kwargs) -> keras.Model:
        """Register the architecture's hyperparameters and build the model."""
        blocks = self._value(hp, "blocks", Param("int", 3, *self.blocks))
        base = self._value(hp, "filters", _choice(self.filters, 32 if 32 in self.filters else None))
        return models.cnn(
            input_shape, num_classes,
            filters=tuple(base * 2 ** min(i, 1) for i in range(blocks)),
            kernel_size=self._value(hp, "kernel_size", _choice(self.kernel_sizes, 5 if 5 in self.kernel_sizes else None)),
            dense_units=self._value(hp, "dense_units", _choice(self.dense_units, 128 if 128 in self.dense_units else None)),
            activation=self._value(hp, "activation", _choice(self.activations)),
            batch_norm=self._value(hp, "batch_norm", Param("bool", True)) if self.batch_norm else False,
            **layer_kwargs,
        )


ARCHITECTURES = {"mlp": MLPSpace, "cnn": CNNSpace}

__all__ = ["ARCHITECTURES", "CNNSpace", "MLPSpace"]
