"""The registry behind ``keras_trainkit.callbacks.get``."""

import keras

from keras_trainkit.utils.registry import Registry

REGISTRY = Registry("callbacks", base_class=keras.callbacks.Callback, keras_get=None)
register = REGISTRY.register
