"""Search spaces over training recipes, as composable pieces for KerasTuner.

Each space registers its hyperparameters on a ``keras_tuner.HyperParameters``
object (``hp``) and builds the matching Keras object. Hyperparameters that
belong to one choice only (Nesterov for SGD, ``beta_2`` for Adam) live in a
``hp.conditional_scope`` of that choice, so a tuner never samples or reports
them when they do not apply.

Every space takes ``fixed`` (a mapping from its own hyperparameter names to
values that are then registered with ``hp.Fixed``) and range arguments that
narrow its defaults. Defaults follow the course notes: the learning rate on a
log scale around 3e-4 for the Adam family, AdamW among the first choices.

Example:
    >>> import keras_tuner
    >>> hp = keras_tuner.HyperParameters()
    >>> name, kwargs = OptimizerSpace(families=["adamw", "sgd"]).sample(hp)
    >>> name, sorted(kwargs)[:2]
    ('adamw', ['beta_1', 'beta_2'])
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras

from keras_trainkit.tuning.space_checks import check_keras_names, check_range
from keras_trainkit.utils.validation import check_condition, check_in


@dataclass(frozen=True)
class Param:
    """One tunable value: a log/linear float or int range, a choice, or a boolean."""

    kind: str  # "float", "int", "choice" or "bool"
    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    values: tuple = ()

    def narrowed(self, bounds) -> "Param":
        """This parameter with ``bounds`` (a ``(low, high)`` pair or a list of choices)."""
        if self.kind in ("float", "int"):
            low, high = bounds
            check_condition("bounds", bounds, low <= high, "must satisfy low <= high")
            default = min(max(self.default, low), high)
            return Param(self.kind, default, low, high, self.log)
        values = tuple(bounds)
        check_condition("bounds", bounds, len(values) > 0, "must list at least one value")
        default = self.default if self.default in values else values[0]
        return Param("choice", default, values=values)

    def with_default(self, default) -> "Param":
        """This parameter with another default (the value a first or grid trial takes)."""
        if self.kind in ("float", "int"):
            check_condition("default", default, self.low <= default <= self.high,
                            f"must lie in [{self.low}, {self.high}]")
        elif self.kind == "choice":
            check_in("default", default, self.values)
        return Param(self.kind, default, self.low, self.high, self.log, self.values)

    def register(self, hp, name: str):
        """Register this parameter as ``name`` on ``hp`` and return its value."""
        if self.kind == "float":
            return hp.Float(name, self.low, self.high, sampling="log" if self.log else "linear",
                            default=self.default)
        if self.kind == "int":
            return hp.Int(name, int(self.low), int(self.high), sampling="log" if self.log else "linear",
                          default=int(self.default))
        if self.kind == "bool":
            return hp.Boolean(name, default=self.default)
        return hp.Choice(name, list(self.values), default=self.default)


def _float(low, high, default, log=False):
    return Param("float", default, low, high, log)


def _choice(values, default=None):
    values = tuple(values)
    return Param("choice", values[0] if default is None else default, values=values)


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
    """

    def __init__(self, fixed: Mapping[str, Any] | None = None,
                 ranges: Mapping[str, Any] | None = None,
                 defaults: Mapping[str, Any] | None = None, prefix: str = ""):
        self.fixed = dict(fixed or {})
        self.ranges = dict(ranges or {})
        self.defaults = dict(defaults or {})
        self.prefix = prefix

    def _shaped(self, param: Param, *keys: str) -> Param:
        """``param`` narrowed by the first of ``keys`` in ``ranges`` and given the
        default of the first of ``keys`` in ``defaults``."""
        for key in keys:
            if key in self.ranges:
                param = param.narrowed(self.ranges[key])
                break
        for key in keys:
            if key in self.defaults:
                return param.with_default(self.defaults[key])
        return param

    def sample(self, hp):
        """Deprecated alias of ``build(hp)`` for the spaces whose ``build`` takes only ``hp``."""
        warnings.warn(f"`{type(self).__name__}.sample(hp)` is deprecated; use `.build(hp)`, the "
                      "verb every space shares.", DeprecationWarning, stacklevel=2)
        return self.build(hp)

    def _value(self, hp, name: str, param: Param):
        full = f"{self.prefix}{name}"
        if name in self.fixed:
            return hp.Fixed(full, self.fixed[name])
        return self._shaped(param, name).register(hp, full)


def _scoped_values(space: Space, hp, parent: str, choice: str, params: Mapping[str, Param],
                   key=lambda n: n) -> dict[str, Any]:
    """Register ``params`` inside the conditional scope ``parent == choice``."""
    with hp.conditional_scope(f"{space.prefix}{parent}", [choice]):
        return {name: space._value(hp, key(name), param) for name, param in params.items()}


_ADAM_BETAS = {"beta_1": _float(0.8, 0.95, 0.9), "beta_2": _choice((0.999, 0.99, 0.98))}

#: The Keras built-in optimizer families, with hand-chosen ranges (``learning_rate`` first).
#: Every optimizer of ``keras_trainkit.optimizers`` is a family too, with ranges
#: derived from its constructor's defaults (see :func:`optimizer_families`).
OPTIMIZER_FAMILIES: dict[str, dict[str, Param]] = {
    "adamw": {"learning_rate": _float(1e-5, 1e-2, 3e-4, log=True),
              "weight_decay": _float(1e-5, 3e-1, 1e-2, log=True), **_ADAM_BETAS},
    "adam": {"learning_rate": _float(1e-5, 1e-2, 3e-4, log=True), **_ADAM_BETAS},
    "sgd": {"learning_rate": _float(1e-4, 1.0, 1e-2, log=True),
            "momentum": _float(0.0, 0.99, 0.9), "nesterov": Param("bool", True)},
    "rmsprop": {"learning_rate": _float(1e-5, 1e-2, 1e-3, log=True),
                "rho": _float(0.8, 0.99, 0.9), "momentum": _float(0.0, 0.9, 0.0)},
    "nadam": {"learning_rate": _float(1e-5, 1e-2, 3e-4, log=True), **_ADAM_BETAS},
    "lion": {"learning_rate": _float(1e-6, 1e-3, 3e-5, log=True),
             "weight_decay": _float(1e-4, 1.0, 1e-1, log=True)},
}


def _beta_param(default: float) -> Param:
    """A moment decay rate near its default, on the scale of its time constant 1/(1-beta)."""
    if default >= 0.99:
        return _choice((default, round(1 - 10 * (1 - default), 6),
                        round(1 - 20 * (1 - default), 6)))
    return _float(1 - 2.5 * (1 - default), 1 - 0.5 * (1 - default), default)


def derived_family(optimizer_class) -> dict[str, Param] | None:
    """The search ranges of an optimizer class, from its constructor's defaults.

    ``learning_rate`` log-uniform in ``[default / 30, default * 3]``; ``beta_1``
    and ``beta_2`` near their defaults (time constants from 0.4x to 2x the
    default's, or a choice of ``beta``, ``1 - 10 (1 - beta)``, ``1 - 20 (1 - beta)``
    for ``beta >= 0.99``); ``momentum`` in ``[0, 0.99]``; ``nesterov`` on or
    off; ``weight_decay`` log-uniform in ``[1e-6, 1e-1]`` (default ``1e-4``).
    Other arguments keep their defaults. ``None`` for a class that needs
    arguments (a wrapper of another optimizer) or has no numeric default
    learning rate.

    Example:
        >>> from keras_trainkit import optimizers
        >>> family = derived_family(optimizers.RAdam)
        >>> sorted(family), family["learning_rate"].default
        (['beta_1', 'beta_2', 'learning_rate', 'weight_decay'], 0.001)
    """
    try:
        parameters = inspect.signature(optimizer_class.__init__).parameters
    except (TypeError, ValueError):
        return None
    defaults = {}
    for name, parameter in parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is inspect.Parameter.empty:
            return None
        defaults[name] = parameter.default
    rate = defaults.get("learning_rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
        return None
    family = {"learning_rate": _float(rate / 30, rate * 3, float(rate), log=True)}
    for name in ("beta_1", "beta_2"):
        value = defaults.get(name)
        if isinstance(value, float) and 0 < value < 1:
            family[name] = _beta_param(value)
    if isinstance(defaults.get("momentum"), float):
        family["momentum"] = _float(0.0, 0.99, min(defaults["momentum"], 0.99))
    if isinstance(defaults.get("nesterov"), bool):
        family["nesterov"] = Param("bool", defaults["nesterov"])
    if "weight_decay" in defaults:
        family["weight_decay"] = _float(1e-6, 1e-1, 1e-4, log=True)
    return family


def optimizer_families() -> dict[str, dict[str, Param]]:
    """Every optimizer family :class:`OptimizerSpace` knows.

    The Keras built-ins of ``OPTIMIZER_FAMILIES`` and every optimizer registered
    in ``keras_trainkit.optimizers`` that can be built from its defaults, by its
    lower-case class name (e.g. ``"radam"``) with :func:`derived_family`'s
    ranges. The registry is read at each call, so optimizers added later appear.
    """
    from keras_trainkit.optimizers import REGISTRY

    table = dict(OPTIMIZER_FAMILIES)
    for name, optimizer_class in sorted(REGISTRY.classes.items()):
        family = derived_family(optimizer_class)
        if family is not None:
            table.setdefault(name.lower(), family)
    return table


class OptimizerSpace(Space):
    """The optimizer family and that family's own hyperparameters.

    Registers ``optimizer`` (a choice among ``families``) and, in the scope of
    each family, ``<family>_<parameter>`` (e.g. ``adamw_learning_rate``,
    ``sgd_momentum``). ``ranges``/``fixed``/``defaults`` keys use the short parameter name
    (``"learning_rate"``) to apply to every family, or the full name
    (``"sgd_momentum"``) for one.

    Args:
        families: optimizer names (the first is the default): the Keras
            built-ins ``adamw``, ``adam``, ``sgd``, ``rmsprop``, ``nadam``,
            ``lion`` and every optimizer this library ships, by lower-case
            class name (``radam``, ``adabelief``, ``yogi``, ...; see
            :func:`optimizer_families` for their ranges).
        extra_families: optimizers of your own, ``{name: {parameter: Param}}``
            (``name`` resolved with ``keras_trainkit.optimizers.get``) or
            ``{name: (optimizer class or factory, {parameter: Param})}``; a
            shipped family's name here replaces its parameters. Families given
            here are searched even when ``families`` does not list them (they
            are appended to it).

    Example:
        >>> import keras_tuner
        >>> space = OptimizerSpace(families=["adamw", "radam"])
        >>> space.build(keras_tuner.HyperParameters()).__class__.__name__
        'AdamW'
    """

    def __init__(self, families: Sequence[str] = ("adamw", "adam", "sgd"),
                 extra_families: Mapping[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        check_condition("families", families, len(families) > 0, "must name at least one optimizer")
        extra = dict(extra_families or {})
        self.table = optimizer_families()
        self.factories: dict[str, Any] = {}
        for name, spec in extra.items():
            if isinstance(spec, tuple):
                check_condition("extra_families", extra_families,
                                len(spec) == 2 and callable(spec[0]),
                                f"must map {name!r} to parameters or (factory, parameters)")
                self.factories[name], spec = spec
            self.table[name] = dict(spec)
        for family in families:
            if family not in self.table:
                raise ValueError(
                    "Argument `families` must name optimizers this library ships "
                    f"({', '.join(sorted(self.table))}); add an optimizer of your own with "
                    "`extra_families={name: {parameter: Param(...)}}`. "
                    f"Received: families={family!r}")
        self.families = tuple(families) + tuple(n for n in extra if n not in families)

    def _family_value(self, hp, family: str, short: str, param: Param):
        name = f"{family}_{short}"
        for key in (name, short):
            if key in self.fixed:
                return hp.Fixed(f"{self.prefix}{name}", self.fixed[key])
        return self._shaped(param, name, short).register(hp, f"{self.prefix}{name}")

    def sample(self, hp) -> tuple[str, dict[str, Any]]:
        """Register the hyperparameters; return ``(optimizer name, constructor kwargs)``."""
        family = self._value(hp, "optimizer", _choice(self.families))
        with hp.conditional_scope(f"{self.prefix}optimizer", [family]):
            kwargs = {short: self._family_value(hp, family, short, param)
                      for short, param in self.table[family].items()}
        return family, kwargs

    def build(self, hp, learning_rate=None, **overrides) -> keras.optimizers.Optimizer:
        """Sample and build the optimizer; ``learning_rate`` may replace the sampled
        value with a schedule built from it."""
        from keras_trainkit import optimizers

        family, kwargs = self.sample(hp)
        if learning_rate is not None:
            kwargs["learning_rate"] = learning_rate
        kwargs.update(overrides)
        if family in self.factories:
            return self.factories[family](**kwargs)
        return optimizers.get(family, **kwargs)


#: Each schedule family's own hyperparameters; fractions are of the whole run.
SCHEDULE_FAMILIES: dict[str, dict[str, Param]] = {
    "constant": {},
    "step": {"gamma": _float(0.1, 0.5, 0.2), "every_fraction": _float(0.2, 0.5, 0.33)},
    "cosine": {"alpha": _float(0.0, 0.1, 0.0)},
    "warmup_cosine": {"warmup_fraction": _float(0.01, 0.2, 0.05), "alpha": _float(0.0, 0.1, 0.0)},
    "one_cycle": {"pct_start": _float(0.1, 0.5, 0.3), "div_factor": _float(5.0, 50.0, 25.0, log=True)},
    "warmup_stable_decay": {"warmup_fraction": _float(0.01, 0.2, 0.05),
                            "decay_fraction": _float(0.1, 0.5, 0.2),
                            "decay_type": _choice(("linear", "cosine", "1-sqrt"))},
}


class ScheduleSpace(Space):
    """The learning-rate schedule family and its parameters.

    Registers ``schedule`` and, in each family's scope, ``<family>_<parameter>``.
    Durations are fractions of the run's total number of optimizer updates, so
    the schedule follows the tuned batch size and epochs. The schedules are
    ``keras_trainkit.schedules`` classes:

    * ``constant``: the sampled learning rate throughout;
    * ``step``: ``StepDecay``, multiply by ``gamma`` every ``every_fraction`` of the run;
    * ``cosine``: ``CosineAnnealing`` to ``alpha * lr``;
    * ``warmup_cosine``: ``Warmup`` (linear from 0 over ``warmup_fraction``) then
      ``CosineAnnealing`` over the rest;
    * ``one_cycle``: ``OneCycle`` peaking at the sampled learning rate;
    * ``warmup_stable_decay``: ``WarmupStableDecay``.
    """

    def __init__(self, families: Sequence[str] = ("constant", "cosine", "warmup_cosine", "step",
                                                   "one_cycle", "warmup_stable_decay"), **kwargs):
        super().__init__(**kwargs)
        check_condition("families", families, len(families) > 0, "must name at least one schedule")
        for family in families:
            check_in("families", family, SCHEDULE_FAMILIES)
        self.families = tuple(families)

    def build(self, hp, learning_rate: float, total_steps: int):
        """Register the hyperparameters; return a float or a ``LearningRateSchedule``."""
        from keras_trainkit import schedules

        family = self._value(hp, "schedule", _choice(self.families))
        p = _scoped_values(self, hp, "schedule", family, SCHEDULE_FAMILIES[family],
                           key=lambda n: f"{family}_{n}")
        total_steps = max(int(total_steps), 2)
        lr = float(learning_rate)

        def steps(fraction):
            return max(int(round(fraction * total_steps)), 1)

        if family == "constant":
            return lr
        if family == "step":
            return schedules.StepDecay(lr, steps(p["every_fraction"]), gamma=p["gamma"])
        if family == "cosine":
            return schedules.CosineAnnealing(lr, total_steps, alpha=p["alpha"])
        if family == "warmup_cosine":
            warmup = min(steps(p["warmup_fraction"]), total_steps - 1)
            return schedules.Warmup(
                schedules.CosineAnnealing(lr, total_steps - warmup, alpha=p["alpha"]), warmup)
        if family == "one_cycle":
            return schedules.OneCycle(lr, total_steps, pct_start=p["pct_start"],
                                      div_factor=p["div_factor"])
        warmup = steps(p["warmup_fraction"])
        decay = min(steps(p["decay_fraction"]), total_steps - warmup)
        return schedules.WarmupStableDecay(lr, total_steps, warmup, max(decay, 1),
                                           decay_type=p["decay_type"])


class TrainingSpace(Space):
    """Batch size, number of epochs, gradient clipping, label smoothing and shift augmentation.

    Registers ``batch_size`` (choice), ``epochs`` (int), ``clipping``
    (``"none"`` or ``"global_norm"``) with ``clip_norm`` in its scope,
    ``label_smoothing`` and, when ``shift`` is given, ``shift`` (int): the
    largest random circular shift of 1-D signals in the training batches
    (``keras_trainkit.datasets.random_shift``; 0 turns it off). Clipping uses the
    optimizer's ``global_clipnorm``, which every Keras optimizer supports.
    """

    def __init__(self, batch_sizes: Sequence[int] = (32, 64, 128, 256),
                 epochs: tuple[int, int] | int = 20, clipping: bool = True,
                 label_smoothing: tuple[float, float] | None = (0.0, 0.2),
                 shift: tuple[int, int] | None = None, **kwargs):
        super().__init__(**kwargs)
        check_condition("batch_sizes", batch_sizes, len(batch_sizes) > 0 and
                        all(isinstance(b, int) and b > 0 for b in batch_sizes),
                        "must list positive integers")
        self.batch_sizes = tuple(batch_sizes)
        if isinstance(epochs, int):
            check_condition("epochs", epochs, epochs > 0, "must be positive")
            self.fixed.setdefault("epochs", epochs)
            epochs = (epochs, epochs)
        check_condition("epochs", epochs, 0 < epochs[0] <= epochs[1], "must satisfy 0 < low <= high")
        self.epochs = epochs
        self.clipping = clipping
        if label_smoothing is not None:
            label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, below=1.0)
        self.label_smoothing = label_smoothing
        if shift is not None:
            check_condition("shift", shift, len(shift) == 2 and 0 <= shift[0] <= shift[1],
                            "must be a (low, high) pair with 0 <= low <= high")
        self.shift = shift

    def build(self, hp) -> dict[str, Any]:
        """Register the hyperparameters; return ``batch_size``, ``epochs``,
        ``clip_norm`` (``None`` when off), ``label_smoothing`` and ``shift`` (0 when off)."""
        default_batch = 128 if 128 in self.batch_sizes else self.batch_sizes[0]
        values = {
            "batch_size": self._value(hp, "batch_size", _choice(self.batch_sizes, default_batch)),
            "epochs": self._value(hp, "epochs", Param("int", self.epochs[1], *self.epochs)),
            "clip_norm": None,
            "label_smoothing": 0.0,
            "shift": 0,
        }
        if self.clipping:
            mode = self._value(hp, "clipping", _choice(("none", "global_norm")))
            if mode == "global_norm":
                values["clip_norm"] = _scoped_values(
                    self, hp, "clipping", "global_norm",
                    {"clip_norm": _float(0.1, 10.0, 1.0, log=True)})["clip_norm"]
        if self.label_smoothing is not None:
            values["label_smoothing"] = self._value(
                hp, "label_smoothing", _float(*self.label_smoothing, self.label_smoothing[0]))
        if self.shift is not None:
            values["shift"] = self._value(hp, "shift", Param("int", self.shift[0], *self.shift))
        return values


class RegularizationSpace(Space):
    """Dropout and an L2 kernel penalty (weight decay lives in the optimizer space).

    Registers ``dropout`` and ``l2`` (``"off"`` or ``"on"``) with ``l2_factor``
    (log-uniform) in its scope.
    """

    def __init__(self, dropout: tuple[float, float] = (0.0, 0.5), l2: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.dropout = check_range("dropout", dropout, 0.0, below=1.0)
        self.l2 = l2

    def build(self, hp) -> dict[str, Any]:
        """Register ``dropout`` and ``l2``; return ``dropout`` and ``kernel_regularizer``
        (``None`` when off)."""
        values = {"dropout": self._value(hp, "dropout", _float(*self.dropout, self.dropout[0])),
                  "kernel_regularizer": None}
        if self.l2 and self._value(hp, "l2", _choice(("off", "on"))) == "on":
            factor = _scoped_values(self, hp, "l2", "on",
                                    {"l2_factor": _float(1e-6, 1e-2, 1e-4, log=True)})["l2_factor"]
            values["kernel_regularizer"] = keras.regularizers.L2(factor)
        return values


class InitializerSpace(Space):
    """The kernel initializer, by Keras name (any name ``keras.initializers.get`` knows)."""

    def __init__(self, choices: Sequence[str] = ("he_normal", "glorot_uniform", "orthogonal"),
                 **kwargs):
        super().__init__(**kwargs)
        self.choices = check_keras_names("choices", choices, keras.initializers.get, "initializer")

    def build(self, hp) -> str:
        """Register ``initializer``; return the chosen name."""
        return self._value(hp, "initializer", _choice(self.choices))


def __getattr__(name):
    # The architecture spaces live in ``architectures``; these names stay importable here.
    if name in ("ARCHITECTURES", "CNNSpace", "MLPSpace"):
        from keras_trainkit.tuning import architectures

        return getattr(architectures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "InitializerSpace", "OPTIMIZER_FAMILIES", "derived_family", "optimizer_families", "OptimizerSpace",
    "Param", "RegularizationSpace", "SCHEDULE_FAMILIES", "ScheduleSpace", "Space", "TrainingSpace",
]
