"""Keras initializers and model-level initialization functions.

* :class:`GeometricFan`: variance ``c / sqrt(fan_in * fan_out)`` (Defazio & Bottou 2019).
* :func:`lsuv_initialize`: layer-sequential unit variance on a data batch (Mishkin & Matas 2016).
* :func:`select_weights`: initialize a small model from a larger one (Xu et al. 2024).

Saving and loading: every initializer class here is registered with Keras as
``keras_trainkit>ClassName``, so a model that uses one saves with
``model.save("m.keras")``. To load it, run ``import keras_trainkit`` first in the
loading process: the import registers the classes, and then
``keras.models.load_model("m.keras")`` needs no ``custom_objects``. Without the
import, Keras cannot find the classes (a ``TypeError``, "Could not locate class").
"""

from keras_trainkit.initializers._registry import REGISTRY
from keras_trainkit.initializers.geometric import GeometricFan, compute_fans
from keras_trainkit.initializers.lsuv import lsuv_initialize
from keras_trainkit.initializers.selection import select_weights


def get(identifier, **kwargs):
    """Return a initializer from a name, a config dict or an instance.

    Names are matched case-insensitively in class-name, snake_case or alias form;
    names this package lacks are passed to Keras's own look-up. ``kwargs`` go to
    the constructor when a name is given.

    Example:
        >>> import keras_trainkit
        >>> keras_trainkit.initializers.get(None) is None
        True
    """
    return REGISTRY.get(identifier, **kwargs)


__all__ = ["GeometricFan", "compute_fans", "get", "lsuv_initialize", "select_weights"]
