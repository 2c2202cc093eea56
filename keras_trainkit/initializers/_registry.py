"""The registry behind ``keras_trainkit.initializers.get``.

Names this package lacks fall back to ``keras.initializers.get``; our classes also
enter Keras's look-up under their bare names (see ``keras_trainkit.utils.registry``).
"""

import inspect

import keras

from keras_trainkit.utils.registry import Registry


def _keras_names():
    """Keras's own initializer names (``keras.initializers``' public classes and aliases)."""
    return sorted(
        name for name, obj in vars(keras.initializers).items()
        if not name.startswith("_") and inspect.isclass(obj)
        and issubclass(obj, keras.initializers.Initializer) and obj is not keras.initializers.Initializer
    )


REGISTRY = Registry(
    "initializers",
    base_class=keras.initializers.Initializer,
    keras_get=keras.initializers.get,
    keras_names="name",
    fallback_names=_keras_names(),
)
register = REGISTRY.register
