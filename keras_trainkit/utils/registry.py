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

and falls back to the matching Keras getter for Keras's own objects. An
unknown name gets the closest known names in its error.

**Our names in Keras's own look-ups.** A registry created with
``keras_names`` (optimizers, schedules, initializers, regularizers) also
enters its concrete classes under their bare names (``"RAdam"``, ``"r_adam"``,
``"radam"``: the class name, its snake_case and lower-case forms, not the
aliases) in Keras's global custom objects (``keras.saving.get_custom_objects()``).
Keras's deserializer consults that table for any name, so after
``import keras_trainkit`` ``keras.optimizers.get("radam")``,
``model.compile(optimizer="radam")``, ``keras.initializers.get("geometric_fan")``
and ``keras.optimizers.schedules.deserialize({"class_name": "LinearDecay", ...})``
work. A name is skipped when it equals (ignoring case and underscores) a public
name of Keras (``keras``, ``keras.optimizers``, ``keras.layers``, ...) or a
custom object someone else registered, so no Keras name changes meaning:
``keras.optimizers.get("muon")`` stays Keras's ``Muon`` while
``keras_trainkit.optimizers.get("muon")`` is ours. (``keras.regularizers.get``
looks plain strings up in Keras's own table only, so a regularizer's bare
name works there in a config dict, ``{"class_name": "srip", "config": {}}``,
but not as a plain string. Wrappers that need an inner optimizer, such as
``Lookahead``, are left out of the bare-name table: Keras builds a named
optimizer with no arguments, so they resolve through
``keras_trainkit.optimizers.get("lookahead", optimizer="adam")`` or a config.)
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

import keras

PACKAGE = "keras_trainkit"

_FAMILIES: dict[str, "Registry"] = {}

# Keras modules whose public names our bare names must never shadow.
_KERAS_MODULES = (
    "", "activations", "callbacks", "constraints", "initializers", "layers", "losses",
    "metrics", "models", "ops", "optimizers", "optimizers.schedules", "regularizers", "saving",
)
_keras_public_names: set[str] | None = None


def snake_case(name: str) -> str:
    """``"ClipByGlobalNorm"`` -> ``"clip_by_global_norm"``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _normalize(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def keras_public_names() -> set[str]:
    """Every public name of Keras's modules, normalized (lower case, no ``_``/``-``)."""
    global _keras_public_names
    if _keras_public_names is None:
        found = set()
        for path in _KERAS_MODULES:
            module = keras
            for part in filter(None, path.split(".")):
                module = getattr(module, part)
            found.update(_normalize(n) for n in dir(module) if not n.startswith("_"))
        _keras_public_names = found
    return _keras_public_names


def bare_keras_names(cls: type) -> list[str]:
    """The bare names under which ``cls`` can enter Keras's custom objects.

    The class name, its snake_case and lower-case forms, less any that would
    shadow a Keras name or a custom object registered by someone else.
    """
    custom = keras.saving.get_custom_objects()
    taken = keras_public_names()
    names = []
    for name in dict.fromkeys((cls.__name__, snake_case(cls.__name__), cls.__name__.lower())):
        if _normalize(name) in taken or custom.get(name, cls) is not cls:
            continue
        names.append(name)
    return names


def _needs_no_arguments(cls: type) -> bool:
    """Whether ``cls()`` is a valid call (no required constructor argument)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return all(
        p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in list(parameters)[1:]
    )


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
        keras_names: also enter concrete classes under their bare names in
            Keras's global custom objects (see the module docstring):
            ``"name"`` for families Keras builds from a bare name
            (``keras.optimizers.get("radam")`` calls ``from_config({})``),
            so only classes constructible without arguments; ``"config"``
            for families Keras only deserializes from config dicts
            (schedules), so every concrete class; ``None``: none.
        fallback_names: the names ``keras_get`` resolves, offered as
            suggestions for a misspelt name.
        kind: what one object is called in messages; defaults to the
            family's singular (``"optimizer"``).
        builtin_names: the class names of Keras's own classes ``keras_get``
            resolves, listed in the unknown-name error (optional).
    """

    def __init__(
        self,
        family: str,
        base_class: type | tuple[type, ...] | None = None,
        keras_get: Callable[[Any], Any] | None = None,
        module: str | None = None,
        keras_names: str | None = None,
        fallback_names: Iterable[str] = (),
        kind: str | None = None,
        builtin_names: Iterable[str] = (),
    ):
        self.family = family
        self.kind = kind or (family[:-3] + "y" if family.endswith("ies") else family[:-1])
        self.module = module or f"{PACKAGE}.{family}"
        self.base_class = base_class
        self.keras_get = keras_get
        self.keras_names = keras_names
        self.fallback_names = tuple(fallback_names)
        self.builtin_names = tuple(builtin_names)
        self._classes: dict[str, type] = {}
        self._abstract: set[str] = set()
        self._lookup: dict[str, str] = {}
        self._spellings: dict[str, str] = {}
        _FAMILIES[family] = self

    def register(self, cls: type | None = None, *, aliases: Iterable[str] = (), abstract: bool = False):
        """Class decorator: register ``cls`` here and with Keras serialization.

        ``abstract=True`` marks a base class (``OptimizerWrapper``): it is
        serializable and found by its exact names, but left out of the known
        names, the suggestions and Keras's bare-name look-up.
        """

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
            if abstract:
                self._abstract.add(name)
                return klass
            for key in (*aliases, snake_case(name)):
                self._spellings.setdefault(_normalize(key), key)
            if self.keras_names == "config" or (self.keras_names == "name" and _needs_no_arguments(klass)):
                custom = keras.saving.get_custom_objects()
                for key in bare_keras_names(klass):
                    custom[key] = klass
            return klass

        return wrap(cls) if cls is not None else wrap

    @property
    def classes(self) -> dict[str, type]:
        """A copy of ``{class name: class}`` for every registered class (abstract ones too)."""
        return dict(self._classes)

    def names(self) -> list[str]:
        """Every name ``get`` accepts for this registry's concrete classes (normalized)."""
        return sorted(key for key, name in self._lookup.items() if name not in self._abstract)

    def lookup(self, name: str) -> type | None:
        """The registered class for ``name`` (any accepted spelling), or ``None``."""
        key = self._lookup.get(_normalize(name))
        return self._classes[key] if key else None

    def suggestions(self, name: str, count: int = 3) -> list[str]:
        """The known names closest to a misspelt ``name`` (ours first, then Keras's)."""
        spellings = dict(self._spellings)
        for fallback in self.fallback_names:
            spellings.setdefault(_normalize(fallback), fallback)
        close = difflib.get_close_matches(_normalize(name), list(spellings), n=count, cutoff=0.6)
        return [spellings[key] for key in close]

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
            return self._from_config(identifier, kwargs)
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
            f"Could not interpret a {self.kind} identifier: expected a name, a "
            f"config dict or an instance. Received: identifier={identifier!r}"
        )

    def _from_config(self, identifier: dict, kwargs: dict) -> Any:
        class_name = identifier.get("class_name")
        config = identifier.get("config", {})
        if not isinstance(class_name, str) or not isinstance(config, dict):
            raise ValueError(
                f"A {self.kind} config must be a dict with a string `class_name` and "
                f"a dict `config`, as `keras.saving.serialize_keras_object` writes it. "
                f"Received: identifier={identifier!r}"
            )
        cls = self.lookup(class_name)
        if cls is not None:
            return cls.from_config({**config, **kwargs})
        if self.keras_get is not None:
            return self.keras_get(identifier)
        raise self._unknown(class_name)

    def _unknown(self, identifier: Any) -> ValueError:
        known = ", ".join(sorted(n for n in self._classes if n not in self._abstract))
        keras_too = ", plus Keras's own" if self.keras_get is not None else ""
        if self.builtin_names:
            keras_too += f" ({', '.join(self.builtin_names)})"
        close = self.suggestions(identifier) if isinstance(identifier, str) else []
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return ValueError(
            f"Unknown {self.kind} identifier.{hint} Known keras_trainkit "
            f"{self.family}: {known or '(none)'}{keras_too}. "
            f"Received: identifier={identifier!r}"
        )


def families() -> dict[str, Registry]:
    """Every registry created so far, by family name (used by the conformance suite)."""
    return dict(_FAMILIES)
