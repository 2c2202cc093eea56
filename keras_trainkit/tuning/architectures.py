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
from keras_trainkit.tuning.space_checks import (
    check_keras_names,
    check_range,
    check_sizes,
    default_in,
)
from keras_trainkit.tuning.space_base import Param, Space, _choice
from keras_trainkit.utils.validation import check_type


class MLPSpace(Space):
    """An MLP (``keras_trainkit.models.mlp``): depth, width, activation, batch norm."""

    def __init__(self, depth: tuple[int, int] = (1, 4), widths: Sequence[int] = (64, 128, 256, 512),
                 activations: Sequence[str] = ("relu", "gelu", "tanh"), batch_norm: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.depth = check_range("depth", depth, 1, integer=True)
        self.widths = check_sizes("widths", widths)
        self.activations = check_keras_names("activations", activations, keras.activations.get,
                                             "activation")
        self.batch_norm = check_type("batch_norm", batch_norm, bool)
        self._check_names()

    def parameters(self) -> dict[str, Param]:
        """``depth``, ``width``, ``activation`` and, with ``batch_norm``, ``batch_norm``."""
        table = {"depth": Param("int", default_in(*self.depth, 2), *self.depth),
                 "width": _choice(self.widths, 256 if 256 in self.widths else None),
                 "activation": _choice(self.activations)}
        if self.batch_norm:
            table["batch_norm"] = Param("bool", False)
        return table

    def build(self, hp, input_shape, num_classes, **layer_kwargs) -> keras.Model:
        """Register the architecture's hyperparameters and build the model."""
        values = {name: self._value(hp, name, param) for name, param in self.parameters().items()}
        return models.mlp(input_shape, num_classes, depth=values["depth"], width=values["width"],
                          activation=values["activation"],
                          batch_norm=values.get("batch_norm", False), **layer_kwargs)


class CNNSpace(Space):
    """A 1-D/2-D CNN (``keras_trainkit.models.cnn``): blocks, base filters, kernel size,
    dense units, activation, batch norm. Block ``i`` has ``filters * 2**min(i, 1)`` filters."""

    def __init__(self, blocks: tuple[int, int] = (2, 4), filters: Sequence[int] = (16, 32, 64),
                 kernel_sizes: Sequence[int] = (3, 5, 7), dense_units: Sequence[int] = (64, 128, 256),
                 activations: Sequence[str] = ("relu", "gelu"), batch_norm: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.blocks = check_range("blocks", blocks, 1, integer=True)
        self.filters = check_sizes("filters", filters)
        self.kernel_sizes = check_sizes("kernel_sizes", kernel_sizes)
        self.dense_units = check_sizes("dense_units", dense_units)
        self.activations = check_keras_names("activations", activations, keras.activations.get,
                                             "activation")
        self.batch_norm = check_type("batch_norm", batch_norm, bool)
        self._check_names()

    def parameters(self) -> dict[str, Param]:
        """``blocks``, ``filters``, ``kernel_size``, ``dense_units``, ``activation`` and,
        with ``batch_norm``, ``batch_norm``."""
        table = {"blocks": Param("int", default_in(*self.blocks, 3), *self.blocks),
                 "filters": _choice(self.filters, 32 if 32 in self.filters else None),
                 "kernel_size": _choice(self.kernel_sizes, 5 if 5 in self.kernel_sizes else None),
                 "dense_units": _choice(self.dense_units, 128 if 128 in self.dense_units else None),
                 "activation": _choice(self.activations)}
        if self.batch_norm:
            table["batch_norm"] = Param("bool", True)
        return table

    def build(self, hp, input_shape, num_classes, **layer_kwargs) -> keras.Model:
        """Register the architecture's hyperparameters and build the model."""
        values = {name: self._value(hp, name, param) for name, param in self.parameters().items()}
        return models.cnn(
            input_shape, num_classes,
            filters=tuple(values["filters"] * 2 ** min(i, 1) for i in range(values["blocks"])),
            kernel_size=values["kernel_size"], dense_units=values["dense_units"],
            activation=values["activation"], batch_norm=values.get("batch_norm", False),
            **layer_kwargs)


ARCHITECTURES = {"mlp": MLPSpace, "cnn": CNNSpace}

__all__ = ["ARCHITECTURES", "CNNSpace", "MLPSpace"]
