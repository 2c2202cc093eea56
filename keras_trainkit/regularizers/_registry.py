"""The registry behind ``keras_trainkit.regularizers.get``."""

import keras

from keras_trainkit.utils.registry import Registry

REGISTRY = Registry("regularizers", base_class=keras.regularizers.Regularizer, keras_get=keras.regularizers.get)
register = REGISTRY.register
