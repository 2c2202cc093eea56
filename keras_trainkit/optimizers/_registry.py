"""The registry behind ``keras_trainkit.optimizers.get``."""

import keras

from keras_trainkit.utils.registry import Registry

REGISTRY = Registry("optimizers", base_class=keras.optimizers.Optimizer, keras_get=keras.optimizers.get)
register = REGISTRY.register
