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
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from keras_trainkit.tuning.space_base import Param, Space, _choice, _float, _scoped_values
from keras_trainkit.tuning.space_checks import (
    check_keras_names,
    check_range,
    check_sizes,
    is_number,
)
from keras_trainkit.utils.validation import check_condition, check_in, check_positive, check_type


def _family_names(name: str, families, what: str) -> tuple[str, ...]:
    """``families``: a non-empty sequence of names, none twice (not one string)."""
    if isinstance(families, str) or not isinstance(families, Sequence):
        raise TypeError(f"Argument `{name}` must be a list of {what} names. "
                        f"Received: {name}={families!r}")
    check_condition(name, families, len(families) > 0, f"must name at least one {what}")
    repeated = sorted({f for f in families if list(families).count(f) > 1}, key=str)
    check_condition(name, families, not repeated, f"names {repeated} more than once")
    return tuple(families)


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
        families = _family_names("families", families, "optimizer")
        extra = dict(check_type("extra_families", extra_families or {}, Mapping))
        self.table = optimizer_families()
        self.factories: dict[str, Any] = {}
        for name, spec in extra.items():
            if isinstance(spec, tuple):
                check_condition("extra_families", extra_families,
                                len(spec) == 2 and callable(spec[0]),
                                f"must map {name!r} to parameters or (factory, parameters)")
                self.factories[name], spec = spec
            check_condition("extra_families", extra_families, isinstance(spec, Mapping) and all(
                isinstance(param, Param) for param in spec.values()),
                f"must map {name!r} to {{parameter: Param}} (or (factory, that))")
            self.table[name] = dict(spec)
        for family in families:
            if family not in self.table:
                raise ValueError(
                    "Argument `families` must name optimizers this library ships "
                    f"({', '.join(sorted(self.table))}); add an optimizer of your own with "
                    "`extra_families={name: {parameter: Param(...)}}`. "
                    f"Received: families={family!r}")
        self.families = tuple(families) + tuple(n for n in extra if n not in families)
        self._check_names()

    def parameters(self) -> dict[str, Param]:
        """``optimizer`` and every family's ``<family>_<parameter>``."""
        table = {"optimizer": _choice(self.families, closed=True)}
        for family in self.families:
            table.update({f"{family}_{short}": param
                          for short, param in self.table[family].items()})
        return table

    def _keys(self, name: str) -> tuple[str, ...]:
        """A family's parameter is reached by its full name, then its short name."""
        for family in self.families:
            short = name[len(family) + 1:]
            if name.startswith(f"{family}_") and short in self.table[family]:
                return (name, short)
        return (name,)

    def sample(self, hp) -> tuple[str, dict[str, Any]]:
        """Register the hyperparameters; return ``(optimizer name, constructor kwargs)``."""
        table = self.parameters()
        family = self._value(hp, "optimizer", table["optimizer"])
        with hp.conditional_scope(f"{self.prefix}optimizer", [family]):
            kwargs = {short: self._value(hp, f"{family}_{short}", table[f"{family}_{short}"])
                      for short in self.table[family]}
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
                            "decay_type": _choice(("linear", "cosine", "1-sqrt"), closed=True)},
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
        for family in _family_names("families", families, "schedule"):
            check_in("families", family, SCHEDULE_FAMILIES)
        self.families = tuple(families)
        self._check_names()

    def parameters(self) -> dict[str, Param]:
        """``schedule`` and every family's ``<family>_<parameter>``."""
        table = {"schedule": _choice(self.families, closed=True)}
        for family in self.families:
            table.update({f"{family}_{n}": param for n, param in SCHEDULE_FAMILIES[family].items()})
        return table

    def build(self, hp, learning_rate: float, total_steps: int):
        """Register the hyperparameters; return a float or a ``LearningRateSchedule``."""
        from keras_trainkit import schedules

        family = self._value(hp, "schedule", self.parameters()["schedule"])
        names = SCHEDULE_FAMILIES[family]
        values = _scoped_values(self, hp, "schedule", family, [f"{family}_{n}" for n in names])
        p = {n: values[f"{family}_{n}"] for n in names}
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
        self.batch_sizes = check_sizes("batch_sizes", batch_sizes)
        if is_number(epochs, integer=True):
            check_positive("epochs", epochs, integer=True)
            self.fixed.setdefault("epochs", epochs)
            epochs = (epochs, epochs)
        self.epochs = check_range("epochs", epochs, 1, integer=True)
        self.clipping = check_type("clipping", clipping, bool)
        if label_smoothing is not None:
            label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, below=1.0)
        self.label_smoothing = label_smoothing
        if shift is not None:
            shift = check_range("shift", shift, 0, integer=True)
        self.shift = shift
        self._check_names()

    def parameters(self) -> dict[str, Param]:
        """``batch_size``, ``epochs`` and, as configured, ``clipping`` with ``clip_norm``,
        ``label_smoothing`` and ``shift``."""
        table = {"batch_size": _choice(self.batch_sizes,
                                       128 if 128 in self.batch_sizes else self.batch_sizes[0]),
                 "epochs": Param("int", self.epochs[1], *self.epochs)}
        if self.clipping:
            table["clipping"] = _choice(("none", "global_norm"), closed=True)
            table["clip_norm"] = _float(0.1, 10.0, 1.0, log=True)
        if self.label_smoothing is not None:
            table["label_smoothing"] = _float(*self.label_smoothing, self.label_smoothing[0])
        if self.shift is not None:
            table["shift"] = Param("int", self.shift[0], *self.shift)
        return table

    def build(self, hp) -> dict[str, Any]:
        """Register the hyperparameters; return ``batch_size``, ``epochs``,
        ``clip_norm`` (``None`` when off), ``label_smoothing`` and ``shift`` (0 when off)."""
        table = self.parameters()
        values = {"batch_size": self._value(hp, "batch_size", table["batch_size"]),
                  "epochs": self._value(hp, "epochs", table["epochs"]),
                  "clip_norm": None, "label_smoothing": 0.0, "shift": 0}
        if self.clipping and self._value(hp, "clipping", table["clipping"]) == "global_norm":
            values["clip_norm"] = _scoped_values(
                self, hp, "clipping", "global_norm", ["clip_norm"])["clip_norm"]
        for name in ("label_smoothing", "shift"):
            if name in table:
                values[name] = self._value(hp, name, table[name])
        return values


class RegularizationSpace(Space):
    """Dropout and an L2 kernel penalty (weight decay lives in the optimizer space).

    Registers ``dropout`` and ``l2`` (``"off"`` or ``"on"``) with ``l2_factor``
    (log-uniform) in its scope.
    """

    def __init__(self, dropout: tuple[float, float] = (0.0, 0.5), l2: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.dropout = check_range("dropout", dropout, 0.0, below=1.0)
        self.l2 = check_type("l2", l2, bool)
        self._check_names()

    def parameters(self) -> dict[str, Param]:
        """``dropout`` and, with ``l2``, ``l2`` with ``l2_factor``."""
        table = {"dropout": _float(*self.dropout, self.dropout[0])}
        if self.l2:
            table.update(l2=_choice(("off", "on"), closed=True), l2_factor=_float(1e-6, 1e-2, 1e-4, log=True))
        return table

    def build(self, hp) -> dict[str, Any]:
        """Register ``dropout`` and ``l2``; return ``dropout`` and ``kernel_regularizer``
        (``None`` when off)."""
        table = self.parameters()
        values = {"dropout": self._value(hp, "dropout", table["dropout"]), "kernel_regularizer": None}
        if self.l2 and self._value(hp, "l2", table["l2"]) == "on":
            factor = _scoped_values(self, hp, "l2", "on", ["l2_factor"])["l2_factor"]
            values["kernel_regularizer"] = keras.regularizers.L2(factor)
        return values


class InitializerSpace(Space):
    """The kernel initializer, by Keras name (any name ``keras.initializers.get`` knows)."""

    def __init__(self, choices: Sequence[str] = ("he_normal", "glorot_uniform", "orthogonal"),
                 **kwargs):
        super().__init__(**kwargs)
        self.choices = check_keras_names("choices", choices, keras.initializers.get, "initializer")
        self._check_names()

    def parameters(self) -> dict[str, Param]:
        """``initializer``."""
        return {"initializer": _choice(self.choices)}

    def build(self, hp) -> str:
        """Register ``initializer``; return the chosen name."""
        return self._value(hp, "initializer", self.parameters()["initializer"])


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
