"""The registry behind ``keras_trainkit.optimizers.get``.

Names this package lacks fall back to Keras's built-in optimizers. Keras's own
``keras.optimizers.get`` only knows the classes in its deserialization table,
which in Keras 3.15 leaves out ``Lamb`` (``keras.optimizers.get("lamb")``
raises ``ValueError``) and accepts only the exact lower-case class name (not
``"schedule_free_adamw"``). The fallback here builds its table from every
``keras.optimizers.Optimizer`` subclass exported by ``keras.optimizers``, so
each built-in resolves by class name, snake_case or lower-case spelling.

Our own classes also enter Keras's look-up under their bare names
(``keras.optimizers.get("radam")``, ``model.compile(optimizer="radam")``),
never under a name Keras already has: see ``keras_trainkit.utils.registry``.
"""

import inspect

import keras

from keras_trainkit.utils.registry import Registry, _normalize, snake_case

# Exported by keras.optimizers but not optimizers one picks by name: the abstract
# base and the wrappers that need an inner optimizer (their configs still resolve
# through keras.optimizers.get).
_NOT_BY_NAME = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}


def keras_builtins(namespace=None) -> dict[str, type]:
    """Keras's built-in optimizer classes by class name (``"Adam"``, ``"Lamb"``, ...).

    ``namespace`` defaults to the installed ``keras.optimizers``; a class it
    lacks (Keras 3.8, the floor of the tested range, has no ``Muon`` and no
    ``ScheduleFreeAdamW``) is simply not in the table, and its names get the
    registry's unknown-name error.
    """
    namespace = keras.optimizers if namespace is None else namespace
    found = {}
    for name, obj in vars(namespace).items():
        if (
            inspect.isclass(obj)
            and issubclass(obj, keras.optimizers.Optimizer)
            and name not in _NOT_BY_NAME
        ):
            found[obj.__name__] = obj
    return found


def builtin_lookup(builtins) -> dict[str, type]:
    """``{normalized name: class}``: each class under its class name and its snake_case name."""
    lookup = {}
    for name, cls in builtins.items():
        for key in (name, snake_case(name)):
            lookup[_normalize(key)] = cls
    return lookup


_BUILTINS = keras_builtins()
_BUILTIN_LOOKUP = builtin_lookup(_BUILTINS)


def keras_get(identifier):
    """Keras's ``keras.optimizers.get`` with every built-in resolvable by name or config."""
    if isinstance(identifier, str):
        cls = _BUILTIN_LOOKUP.get(_normalize(identifier))
        if cls is not None:
            return cls()
    if isinstance(identifier, dict) and isinstance(identifier.get("class_name"), str):
        cls = _BUILTIN_LOOKUP.get(_normalize(identifier["class_name"]))
        if cls is not None and identifier.get("module") in (None, "keras.optimizers"):
            return cls.from_config(dict(identifier.get("config", {})))
    return keras.optimizers.get(identifier)


REGISTRY = Registry(
    "optimizers",
    base_class=keras.optimizers.Optimizer,
    keras_get=keras_get,
    keras_names="name",
    fallback_names=sorted(name.lower() for name in _BUILTINS),
    builtin_names=sorted(_BUILTINS),
)
register = REGISTRY.register
