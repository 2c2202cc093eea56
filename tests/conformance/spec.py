"""How the conformance suite builds, breaks and exercises each public class.

Each family (one registry in ``keras_trainkit.utils.families()``) has a module
``tests/conformance/specs/<family>.py`` that defines ``FAMILY``, a
:class:`FamilySpec`. A new public class needs no new test code: when its
constructor has usable defaults and the family's ``invalid`` arguments apply,
the family spec covers it; otherwise add a :class:`ClassSpec` entry under its
class name in a ``CLASSES`` dict of a module ``specs/<family>_<part>.py`` (one
part module per group of classes, e.g. ``specs/optimizers_wrappers.py``);
:func:`collect_classes` merges every part into ``FamilySpec.classes``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ClassSpec:
    """Per-class overrides of the family defaults.

    Attributes:
        valid: constructor kwargs for a valid instance, or a zero-argument
            callable returning them (for arguments that are objects built fresh).
        invalid: kwargs (merged over ``valid``) that must raise ``ValueError``
            whose message contains ``Received:``.
        exercise: ``exercise(instance, tmp_path)`` replacing the family's use in
            ``model.fit`` plus save/load.
        fuzz: whether to fuzz the scalar constructor arguments.
        known_failures: ``{backend: cause}``: Keras backends on which the
            exercise is known to fail; it runs there as a strict xfail (a fix
            makes the test say to remove the entry).
    """

    valid: dict[str, Any] | Callable[[], dict[str, Any]] = field(default_factory=dict)
    invalid: dict[str, Any] | None = None
    exercise: Callable[[Any, Any], None] | None = None
    fuzz: bool = True
    known_failures: dict[str, str] = field(default_factory=dict)

    def valid_kwargs(self) -> dict[str, Any]:
        return self.valid() if callable(self.valid) else dict(self.valid)


@dataclass
class FamilySpec:
    """Defaults for every class of a family.

    Attributes:
        invalid: kwargs that break any class of the family (e.g.
            ``{"learning_rate": -1.0}`` for optimizers); a class whose
            constructor lacks one of them must give its own ``ClassSpec.invalid``.
        exercise: ``exercise(instance, tmp_path)``: use the instance inside
            ``model.fit`` and check it survives ``model.save``/``load_model``.
        classes: per-class overrides by class name.
    """

    invalid: dict[str, Any]
    exercise: Callable[[Any, Any], None]
    classes: dict[str, ClassSpec] = field(default_factory=dict)

    def spec_for(self, name: str) -> ClassSpec:
        return self.classes.get(name, ClassSpec())


def collect_classes(family: str) -> dict[str, ClassSpec]:
    """Merge ``CLASSES`` of every ``tests/conformance/specs/<family>_*.py`` module."""
    from tests.conformance import specs

    merged: dict[str, ClassSpec] = {}
    for info in pkgutil.iter_modules(specs.__path__):
        if info.name.startswith(f"{family}_"):
            part = importlib.import_module(f"{specs.__name__}.{info.name}")
            overlap = merged.keys() & part.CLASSES.keys()
            if overlap:
                raise ValueError(f"ClassSpec given twice for {sorted(overlap)} ({info.name})")
            merged.update(part.CLASSES)
    return merged
