"""The registry behind ``keras_trainkit.initializers.get``."""

import keras

from keras_trainkit.utils.registry import Registry

REGISTRY = Registry("initializers", base_class=keras.initializers.Initializer, keras_get=keras.initializers.get)
register = REGISTRY.register
