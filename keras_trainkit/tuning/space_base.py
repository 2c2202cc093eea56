"""The base of the search spaces: :class:`Param` (one tunable value) and
:class:`Space` (a name prefix, user-fixed values, narrowed ranges and defaults).

A space lists every hyperparameter it can register in :meth:`Space.parameters`,
conditional ones included, and registers them from that table, so the names that
``fixed``, ``ranges`` and ``defaults`` may use are known when the space is made.
A name the space does not have (a typo such as ``fixed={"batchsize": 64}``), a
range or default its parameter cannot take, and a range or default that a fixed
value would override are refused then, naming the argument: a search would
otherwise ignore them and tune what the user meant to fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keras_trainkit.tuning.space_checks import default_in, is_number
from keras_trainkit.utils.validation import check_condition, check_in, check_type


@dataclass(frozen=True)
class Param:
    """One tunable value: a log/linear float or int range, a choice, or a boolean.

    A ``closed`` choice lists every case the space's code handles (an optimizer
    family, ``"none"``/``"global_norm"``): ``ranges`` may narrow it and ``fixed``
    may pick one of its values, but no other value, which the space would ignore
    (turning clipping off for ``"on"``) or fail on in every trial's build.
    """

    kind: str  # "float", "int", "choice" or "bool"
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    values: tuple = ()
    closed: bool = False

    def allows(self, value) -> bool:
        """Whether the space can take ``value`` for this parameter (a boolean for a
        boolean, one of its values for a closed choice; any value otherwise)."""
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.closed:
            return any(value == v and type(value) is type(v) for v in self.values)
        return True

    def check_allowed(self, name: str, value):
        """Refuse a ``fixed`` value the space cannot take; ``name`` is the argument."""
        check_condition(name, value, self.allows(value), f"must be {self._allowed()}")
        return value

    def _allowed(self) -> str:
        """The values :meth:`allows` takes, in words."""
        if self.kind == "bool":
            return "True or False"
        return f"one of {', '.join(map(repr, self.values))}"

    def narrowed(self, bounds, name: str = "bounds") -> "Param":
        """This parameter with ``bounds`` (a ``(low, high)`` pair or a list of choices);
        ``name`` is the argument that gave them, for the error message."""
        if self.kind in ("float", "int"):
            integer = self.kind == "int"
            ok = (isinstance(bounds, (tuple, list)) and len(bounds) == 2
                  and all(is_number(b, integer) for b in bounds))
            check_condition(name, bounds, ok, f"must be a (low, high) pair of "
                            f"{'integers' if integer else 'numbers'}")
            low, high = bounds
            check_condition(name, bounds, low <= high, "must satisfy low <= high")
            check_condition(name, bounds, not self.log or low > 0,
                            "must be positive: the parameter is sampled on a log scale")
            default = default_in(low, high, self.default)
            return Param(self.kind, default, low, high, self.log)
        check_condition(name, bounds, isinstance(bounds, (tuple, list)) and len(bounds) > 0,
                        "must list at least one value")
        values = tuple(bounds)
        refused = [value for value in values if not self.allows(value)]
        check_condition(name, bounds, not refused, f"must list values that are each "
                        f"{self._allowed()}; {', '.join(map(repr, refused))} is not")
        default = self.default if self.default in values else values[0]
        return Param("choice", default, values=values,
                     closed=self.closed or self.kind == "bool")

    def with_default(self, default, name: str = "default") -> "Param":
        """This parameter with another default (the value a first or grid trial takes)."""
        if self.kind in ("float", "int"):
            check_condition(name, default, is_number(default, integer=self.kind == "int")
                            and self.low <= default <= self.high,
                            f"must be {'an integer' if self.kind == 'int' else 'a number'} "
                            f"in [{self.low}, {self.high}]")
        elif self.kind == "choice":
            check_in(name, default, self.values)
        else:
            check_type(name, default, bool)
        return Param(self.kind, default, self.low, self.high, self.log, self.values, self.closed)

    def register(self, hp, name: str):
        """Register this parameter as ``name`` on ``hp`` and return its value."""
        if self.kind == "float":
            return hp.Float(name, self.low, self.high, sampling="log" if self.log else "linear",
                            default=self.default)
        if self.kind == "int":
            return hp.Int(name, int(self.low), int(self.high), sampling="log" if self.log else "linear",
                          default=int(self.default))
        if self.kind == "bool" or (self.values and all(isinstance(v, bool) for v in self.values)):
            # KerasTuner's Choice turns booleans into 0 and 1 (bool is an int subclass):
            # a boolean narrowed by `ranges` stays a Boolean, or a Fixed of its one value.
            if len(set(self.values)) == 1:
                return hp.Fixed(name, self.values[0])
            return hp.Boolean(name, default=self.default)
        return hp.Choice(name, list(self.values), default=self.default)


def _float(low, high, default, log=False):
    return Param("float", default, low, high, log)


def _choice(values, default=None, closed=False):
    values = tuple(values)
    return Param("choice", values[0] if default is None else default, values=values,
                 closed=closed)


def _mapping(name: str, value) -> dict:
    if value is not None and not isinstance(value, Mapping):
        raise TypeError(f"Argument `{name}` must be a mapping from hyperparameter names, or None. "
                        f"Received: {name}={value!r}")
    return dict(value or {})


class Space:
    """Base of the spaces: a name prefix, user-fixed values, narrowed ranges and defaults.

    Args:
        fixed: ``{parameter name: value}`` registered with ``hp.Fixed``.
        ranges: ``{parameter name: (low, high) or [choices]}`` narrowing the defaults.
        defaults: ``{parameter name: value}`` replacing a parameter's default, the
            value it takes in a tuner's first trial with ``start_from_defaults``
            (e.g. a known good recipe to search around) and when it is inactive.
        prefix: prepended to every hyperparameter name, so two spaces of the
            same kind can live in one search.

    A subclass lists its hyperparameters in :meth:`parameters` and calls
    :meth:`_check_names` at the end of its ``__init__``; a space of one's own
    that does not (``parameters()`` is ``None``) is not checked.
    """

    def __init__(self, fixed: Mapping[str, Any] | None = None,
                 ranges: Mapping[str, Any] | None = None,
                 defaults: Mapping[str, Any] | None = None, prefix: str = ""):
        self.fixed = _mapping("fixed", fixed)
        self.ranges = _mapping("ranges", ranges)
        self.defaults = _mapping("defaults", defaults)
        # As the user gave them, for messages (a subclass may add its own arguments' values).
        self._given = {"fixed": dict(self.fixed), "ranges": dict(self.ranges),
                       "defaults": dict(self.defaults)}
        self.prefix = check_type("prefix", prefix, str)

    def parameters(self) -> dict[str, Param] | None:
        """Every hyperparameter this space can register, by name without ``prefix``,
        conditional ones included (``None``: the space does not say)."""
        return None

    def _keys(self, name: str) -> tuple[str, ...]:
        """The ``fixed``/``ranges``/``defaults`` keys that reach parameter ``name``, first first."""
        return (name,)

    def _shaped(self, param: Param, *keys: str) -> Param:
        """``param`` narrowed by the first of ``keys`` in ``ranges`` and given the
        default of the first of ``keys`` in ``defaults``."""
        for key in keys:
            if key in self.ranges:
                param = param.narrowed(self.ranges[key], f"ranges[{key!r}]")
                break
        for key in keys:
            if key in self.defaults:
                return param.with_default(self.defaults[key], f"defaults[{key!r}]")
        return param

    def _check_names(self) -> None:
        """Refuse a ``fixed``/``ranges``/``defaults`` name the space does not have, a
        range or default its parameter cannot take, and one that ``fixed`` overrides."""
        table = self.parameters()
        if table is None:
            return
        reaching: dict[str, list[str]] = {}  # key -> the parameters it reaches
        for name in table:
            for key in self._keys(name):
                reaching.setdefault(key, []).append(name)
        for argument in ("fixed", "ranges", "defaults"):
            given = getattr(self, argument)
            unknown = [key for key in given if key not in reaching]
            if unknown:
                raise ValueError(
                    f"Argument `{argument}` names {', '.join(map(repr, unknown))}, which "
                    f"{type(self).__name__} does not have as configured (it has "
                    f"{', '.join(map(repr, sorted(reaching)))}). Received: "
                    f"{argument}={self._given[argument]!r}")
        for name, param in table.items():
            keys = self._keys(name)
            fixed = [key for key in keys if key in self.fixed]
            if fixed:  # the value registered is the first key's
                param.check_allowed(f"fixed[{fixed[0]!r}]", self.fixed[fixed[0]])
            else:
                self._shaped(param, *keys)  # raises for a range or default it cannot take
        for argument in ("ranges", "defaults"):
            for key in getattr(self, argument):
                if all(any(k in self.fixed for k in self._keys(name)) for name in reaching[key]):
                    raise ValueError(
                        f"Argument `{argument}` gives {key!r}, which `fixed` (or the space's "
                        f"own argument) fixes, so the search would ignore it; remove one of "
                        f"the two. Received: {argument}[{key!r}]={getattr(self, argument)[key]!r}, "
                        f"fixed={self._given['fixed']!r}")

    def sample(self, hp):
        """Deprecated alias of ``build(hp)`` for the spaces whose ``build`` takes only ``hp``."""
        warnings.warn(f"`{type(self).__name__}.sample(hp)` is deprecated; use `.build(hp)`, the "
                      "verb every space shares.", DeprecationWarning, stacklevel=2)
        return self.build(hp)

    def _value(self, hp, name: str, param: Param):
        """Register parameter ``name`` (fixed, or ``param`` shaped by ``ranges``/``defaults``)."""
        keys = self._keys(name)
        for key in keys:
            if key in self.fixed:
                return hp.Fixed(f"{self.prefix}{name}", self.fixed[key])
        return self._shaped(param, *keys).register(hp, f"{self.prefix}{name}")


def _scoped_values(space: Space, hp, parent: str, choice: str, names) -> dict[str, Any]:
    """Register the parameters ``names`` (of ``space.parameters()``) inside the conditional
    scope ``parent == choice``; return them by name."""
    table = space.parameters()
    with hp.conditional_scope(f"{space.prefix}{parent}", [choice]):
        return {name: space._value(hp, name, table[name]) for name in names}


__all__ = ["Param", "Space"]
