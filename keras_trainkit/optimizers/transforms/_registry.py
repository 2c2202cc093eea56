"""The registry behind ``keras_trainkit.optimizers.transforms.get``."""

from keras_trainkit.optimizers.transforms.base import GradientTransform
from keras_trainkit.utils.registry import Registry

REGISTRY = Registry("transforms", base_class=GradientTransform, module="keras_trainkit.optimizers.transforms")
register = REGISTRY.register
