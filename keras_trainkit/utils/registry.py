"""Name registries giving each sub-package a Keras-style ``get(identifier)``.

A :class:`Registry` records the public classes of one family (optimizers,
schedules, ...). Registering a class also registers it with
``keras.saving.register_keras_serializable(package="keras_trainkit")`` so it
survives ``model.save``/``keras.models.load_model``.

``Registry.get`` accepts, like ``keras.optimizers.get``:

* an instance (returned as is),
* a name: the class name (``"RAdam"``), its snake_case form (``"r_adam"``),
  any alias given at registration (``"radam"``), matched case-insensitively,
* a config dict ``{"class_name": ..., "config": {...}}``,
* ``None`` (returned as ``None``),

and falls back to the matching Keras getter for Keras's own objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import keras

PACKAGE = "keras_trainkit"

_FAMILIES: dict[str, "Registry"] = {}


def snake_case(name: str) -> str:
    """``"ClipByGlobalNorm"`` -> ``"clip_by_global_norm"``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _normalize(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


class Registry:
    """The public classes of one family, looked up by name, config or instance.

    Args:
        family: the family's name, e.g. ``"optimizers"``; used in error messages
            and by the conformance suite.
        base_class: instances of this class are passed through by ``get``.
        keras_get: Keras's own getter for the family (e.g.
            ``keras.optimizers.get``), tried for names this registry lacks.
        module: the public package whose ``get`` and ``__all__`` serve this
            family; defaults to ``keras_trainkit.<family>``.
        keras_names: the names of Keras's own classes ``keras_get`` resolves,
            listed in the unknown-name error (optional).
    """

    def __init__(
        self,
        family: str,
        base_class: type | tuple[type, ...] | None = None,
        keras_get: Callable[[Any], Any] | None = None,
        module: str | None = None,
        keras_names: Iterable[str] = (),
    ):
        self.family = family
        self.module = module or f"{PACKAGE}.{family}"
        self.base_class = base_class
        self.keras_get = keras_get
        self.keras_names = tuple(keras_names)
        self._classes: dict[str, type] = {}
        self._lookup: dict[str, str] = {}
        _FAMILIES[family] = self

    def register(self, cls: type | None = None, *, aliases: Iterable[str] = ()):
        """Class decorator: register ``cls`` here and with Keras serialization."""

        def wrap(klass: type) -> type:
            klass = keras.saving.register_keras_serializable(package=PACKAGE)(klass)
            name = klass.__name__
            if name in self._classes and self._classes[name] is not klass:
                raise ValueError(
                    f"A class named {name!r} is already registered in "
                    f"keras_trainkit.{self.family}."
                )
            self._classes[name] = klass
            for key in (name, snake_case(name), *aliases):
                self._lookup[_normalize(key)] = name
            return klass

        return wrap(cls) if cls is not None else wrap

    @property
    def classes(self) -> dict[str, type]:
        """A copy of ``{class name: class}`` for every registered class."""
        return dict(self._classes)

    def names(self) -> list[str]:
        """Every name ``get`` accepts for this registry's own classes."""
        return sorted(self._lookup)

    def lookup(self, name: str) -> type | None:
        """The registered class for ``name`` (any accepted spelling), or ``None``."""
        key = self._lookup.get(_normalize(name))
        return self._classes[key] if key else None

    def get(self, identifier: Any, **kwargs: Any) -> Any:
        """Resolve ``identifier`` to an object of this family.

        ``kwargs`` are passed to the constructor when a name is given, e.g.
        ``get("radam", learning_rate=1e-3)``.
        """
        if identifier is None:
            return None
        if self.base_class is not None and isinstance(identifier, self.base_class):
            if kwargs:
                raise ValueError(
                    "Constructor arguments can only be given with a name, not with "
                    f"an instance. Received: identifier={identifier!r}, kwargs={kwargs!r}"
                )
            return identifier
        if isinstance(identifier, dict):
            class_name = identifier.get("class_name")
            cls = self.lookup(class_name) if isinstance(class_name, str) else None
            if cls is not None:
                config = dict(identifier.get("config", {}))
                config.update(kwargs)
                return cls.from_config(config)
            if self.keras_get is not None:
                return self.keras_get(identifier)
            raise self._unknown(identifier)
        if isinstance(identifier, str):
            cls = self.lookup(identifier)
            if cls is not None:
                return cls(**kwargs)
            if self.keras_get is not None:
                try:
                    obj = self.keras_get(identifier)
                except (ValueError, TypeError):
                    obj = None
                if obj is not None:
                    if kwargs:
                        return type(obj)(**kwargs)
                    return obj
            raise self._unknown(identifier)
        if callable(identifier) and self.base_class is None:
            return identifier
        raise TypeError(
            f"Could not interpret a {self.family[:-1]} identifier: expected a name, a "
            f"config dict or an instance. Received: identifier={identifier!r}"
        )

    def _unknown(self, identifier: Any) -> ValueError:
        known = ", ".join(sorted(self._classes))
        keras_too = ", plus Keras's own" if self.keras_get is not None else ""
        if self.keras_names:
            keras_too += f" ({', '.join(self.keras_names)})"
        return ValueError(
            f"Unknown {self.family[:-1]} identifier. Known keras_trainkit "
            f"{self.family}: {known or '(none)'}{keras_too}. "
            f"Received: identifier={identifier!r}"
        )


def families() -> dict[str, Registry]:
    """Every registry created so far, by family name (used by the conformance suite)."""
    return dict(_FAMILIES)
