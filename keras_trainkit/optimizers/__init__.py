"""Keras optimizers, optimizer wrappers and gradient transforms.

Saving and loading: every optimizer, wrapper and gradient transform here is
registered with Keras as ``keras_trainkit>ClassName``, so a model that uses one
saves with ``model.save("m.keras")``, optimizer state included. To load it, run
``import keras_trainkit`` first in the loading process: the import registers the
classes, and then ``keras.models.load_model("m.keras")`` needs no
``custom_objects``. Without the import, Keras cannot find the classes (a
``TypeError``, "Could not locate class").
"""

from keras_trainkit.optimizers._registry import REGISTRY, keras_get
from keras_trainkit.optimizers._base import TrainkitOptimizer
from keras_trainkit.optimizers.adabelief import AdaBelief
from keras_trainkit.optimizers.adan import Adan
from keras_trainkit.optimizers.lars import LARS
from keras_trainkit.optimizers.novograd import NovoGrad
from keras_trainkit.optimizers.prodigy import Prodigy
from keras_trainkit.optimizers.radam import RAdam
from keras_trainkit.optimizers.yogi import Yogi
from keras_trainkit.optimizers.wrapper import OptimizerWrapper
from keras_trainkit.optimizers import transforms
from keras_trainkit.optimizers.transforms import (
    AdaptiveGradientClipping,
    AutoClip,
    ClipByGlobalNorm,
    ClipByValue,
    GradientCentralization,
    GradientChain,
    GradientNoise,
    GradientTransform,
    NonFiniteGradientError,
    SkipLargeUpdates,
    SkipNonFinite,
    SkipTransform,
)
from keras_trainkit.optimizers.transformed import TransformedOptimizer
from keras_trainkit.optimizers.shampoo import Shampoo
from keras_trainkit.optimizers.lookahead import Lookahead
from keras_trainkit.optimizers.sam import SAM, SAMModel, sam_gradients, sam_perturbation
from keras_trainkit.optimizers.adopt import ADOPT
from keras_trainkit.optimizers.ademamix import AdEMAMix
from keras_trainkit.optimizers.mars import MARS
from keras_trainkit.optimizers.muon import Muon
from keras_trainkit.optimizers.soap import SOAP
from keras_trainkit.optimizers.cautious import Cautious
from keras_trainkit.optimizers.layerwise import (
    LayerwiseLearningRate,
    depth_decay_multipliers,
    match_multiplier,
)
from keras_trainkit.optimizers import control
from keras_trainkit.optimizers.schedule_free import ScheduleFree
from keras_trainkit.optimizers.evaluation_weights import find_evaluation_weights


def get(identifier, **kwargs):
    """Return a optimizer from a name, a config dict or an instance.

    Names are matched case-insensitively in class-name, snake_case or alias form;
    names this package lacks are passed to Keras's own look-up. ``kwargs`` go to
    the constructor when a name is given. ``"muon"`` is ours
    (:class:`Muon`); a config Keras serialized (``"module": "keras.optimizers"``,
    e.g. of ``keras.optimizers.Muon``) still gives Keras's class.

    Example:
        >>> import keras_trainkit
        >>> keras_trainkit.optimizers.get(None) is None
        True
    """
    if isinstance(identifier, dict) and identifier.get("module") == "keras.optimizers" and not kwargs:
        return keras_get(identifier)
    return REGISTRY.get(identifier, **kwargs)


__all__ = ["get", "control"]
__all__ += ["OptimizerWrapper"]
__all__ += [
    "transforms",
    "AdaptiveGradientClipping",
    "AutoClip",
    "ClipByGlobalNorm",
    "ClipByValue",
    "GradientCentralization",
    "GradientChain",
    "GradientNoise",
    "GradientTransform",
    "NonFiniteGradientError",
    "SkipLargeUpdates",
    "SkipNonFinite",
    "SkipTransform",
    "TransformedOptimizer",
]
__all__ += ["Shampoo", "Lookahead", "SAM", "SAMModel", "sam_gradients", "sam_perturbation"]
__all__ += ["ScheduleFree", "find_evaluation_weights"]
__all__ += ["LayerwiseLearningRate", "depth_decay_multipliers", "match_multiplier"]
__all__ += ["TrainkitOptimizer", "AdaBelief", "Adan", "LARS", "NovoGrad", "Prodigy", "RAdam", "Yogi"]
__all__ += ["ADOPT", "AdEMAMix", "Cautious", "MARS", "Muon", "SOAP"]
