"""Keras weight regularizers and model-level penalties.

* Weight regularizers (``kernel_regularizer=``): :class:`SpectralNorm`,
  :class:`SoftOrthogonality`, :class:`SRIP`.
* Model-level penalties that need the inputs: :class:`JacobianPenalty`,
  :class:`InputGradientPenalty`, used through :class:`PenalizedModel` in
  ``model.fit`` or as hooks of the custom-loop ``Trainer`` (protocol in
  :mod:`keras_trainkit.regularizers.penalties`).

Saving and loading: every regularizer and penalized model here is registered with
Keras as ``keras_trainkit>ClassName``, so a model that uses one saves with
``model.save("m.keras")``. To load it, run ``import keras_trainkit`` first in the
loading process: the import registers the classes, and then
``keras.models.load_model("m.keras")`` needs no ``custom_objects``. Without the
import, Keras cannot find the classes (a ``TypeError``, "Could not locate class").
"""

from keras_trainkit.regularizers import penalties
from keras_trainkit.regularizers._registry import REGISTRY
from keras_trainkit.regularizers.penalties import (
    InputGradientPenalty,
    JacobianPenalty,
    ModelPenalty,
    PenalizedModel,
)
from keras_trainkit.regularizers.weight import SRIP, SoftOrthogonality, SpectralNorm, state_variables


def get(identifier, **kwargs):
    """Return a regularizer from a name, a config dict or an instance.

    Names are matched case-insensitively in class-name, snake_case or alias form;
    names this package lacks are passed to Keras's own look-up. ``kwargs`` go to
    the constructor when a name is given. Model-level penalties are found by
    ``keras_trainkit.regularizers.penalties.get``.

    Example:
        >>> import keras_trainkit
        >>> keras_trainkit.regularizers.get(None) is None
        True
    """
    return REGISTRY.get(identifier, **kwargs)


__all__ = [
    "InputGradientPenalty",
    "JacobianPenalty",
    "ModelPenalty",
    "PenalizedModel",
    "SRIP",
    "SoftOrthogonality",
    "SpectralNorm",
    "get",
    "penalties",
    "state_variables",
]
