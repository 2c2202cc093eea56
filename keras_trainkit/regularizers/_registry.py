"""The registry behind ``keras_trainkit.regularizers.get``.

Names this package lacks fall back to ``keras.regularizers.get``; our classes also
enter Keras's look-up under their bare names (see ``keras_trainkit.utils.registry``).
"""

import inspect

import keras

from keras_trainkit.utils.registry import Registry


def _keras_names():
    """Keras's own regularizer names (``keras.regularizers``' public classes and aliases)."""
    return sorted(
        name for name, obj in vars(keras.regularizers).items()
        if not name.startswith("_") and inspect.isclass(obj)
        and issubclass(obj, keras.regularizers.Regularizer) and obj is not keras.regularizers.Regularizer
    )


REGISTRY = Registry(
    "regularizers",
    base_class=keras.regularizers.Regularizer,
    keras_get=keras.regularizers.get,
    keras_names="name",
    fallback_names=_keras_names(),
)
register = REGISTRY.register
