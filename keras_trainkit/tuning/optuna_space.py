"""KerasTuner hyperparameters as Optuna distributions, asked define-by-run.

Every KerasTuner hyperparameter type maps to one Optuna distribution. The
parameter keeps its KerasTuner name and value, except where KerasTuner samples
on a scale Optuna has no distribution for; there the Optuna parameter gets a
suffix that says which transform it holds:

* ``Choice(values)`` -> ``name``: ``Categorical(values)``, the same value.
* ``Boolean`` -> ``name``: ``Categorical([False, True])``.
* ``Fixed(value)`` -> ``name``: ``Categorical([value])`` (never sampled).
* ``Int``/``Float(lo, hi, step)``, linear -> ``name``: ``Int``/``Float(lo, hi', step)``.
* ``Int``/``Float`` with ``sampling="log"`` -> ``name``: ``Int``/``Float(lo, hi, log=True)``.
* ``sampling="reverse_log"`` -> ``name:mirrored``: ``p = lo + hi - x``,
  log-distributed on ``[lo, hi]``; the value is ``lo + hi - p``.
* ``log``/``reverse_log`` with a ``step`` -> ``name:index``: ``Int(0, n - 1)``, the
  grid index ``k``; the value is ``lo * step**k`` (``lo + hi - lo * step**k``).

``hi'`` is the largest grid point ``<= hi``. ``reverse_log`` is KerasTuner's
mirror image of ``log`` (``x = hi + lo - lo * (hi/lo)**(1-u)``, dense near
``hi``): its mirror ``lo + hi - x`` is log-uniform, which Optuna's samplers
model directly. A stepped log scale is a geometric grid ``lo * step**k``, so
its index keeps the order (a categorical would not) and the value stays exact.

:func:`suggest` asks an ``optuna.Trial`` for one hyperparameter and returns the
KerasTuner value; :func:`optuna_params` turns KerasTuner values into Optuna
parameters (to enqueue a trial at known values), :func:`fix_value` records one
in a running trial; :class:`AskingHyperParameters`
asks the study for every hyperparameter a model registers while it is built,
so a parameter is asked only when the build reaches it (define-by-run).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

import keras_tuner
from keras_trainkit.tuning.optuna_required import optuna
from keras_tuner.engine import hyperparameters as kt_hp

MIRRORED = ":mirrored"
INDEX = ":index"


@dataclass(frozen=True)
class ParamMapping:
    """One KerasTuner hyperparameter as an Optuna parameter."""

    name: str  # the Optuna parameter's name
    distribution: optuna.distributions.BaseDistribution
    to_value: Callable[[Any], Any]  # Optuna parameter -> KerasTuner value
    to_param: Callable[[Any], Any]  # KerasTuner value -> Optuna parameter


def _identity(value):
    return value


def _grid_high(low, high, step):
    """The largest ``low + k * step <= high``, computed in decimal as Optuna does."""
    low_d, high_d, step_d = Decimal(str(low)), Decimal(str(high)), Decimal(str(step))
    return low_d + ((high_d - low_d) // step_d) * step_d


def _stepped_log(hp) -> ParamMapping:
    """A log or reverse-log scale with a step: the geometric grid ``lo * step**k``."""
    low, high, step = hp.min_value, hp.max_value, hp.step
    count = int(math.log(high / low, step) + 1e-8) + 1
    cast = int if isinstance(hp, kt_hp.Int) else float
    reverse = hp.sampling == "reverse_log"

    def to_value(index):
        point = low * step ** int(index)
        return cast(high + low - point if reverse else point)

    def to_param(value):
        point = high + low - value if reverse else value
        return min(max(int(round(math.log(point / low, step))), 0), count - 1)

    return ParamMapping(hp.name + INDEX, optuna.distributions.IntDistribution(0, count - 1),
                        to_value, to_param)


def _mirror(low, high, cast):
    """``v -> lo + hi - v`` on ``[lo, hi]``: each end maps exactly to the other (in
    floating point ``lo + hi - lo`` may miss ``hi``, and KerasTuner's default is ``lo``)
    and rounding never leaves the range."""

    def mirror(value):
        if value == low:
            return cast(high)
        if value == high:
            return cast(low)
        return cast(min(max(low + high - value, low), high))

    return mirror


def _numerical(hp) -> ParamMapping:
    is_int = isinstance(hp, kt_hp.Int)
    low, high = hp.min_value, hp.max_value
    if hp.sampling != "linear" and hp.step is not None:
        return _stepped_log(hp)
    if hp.sampling == "reverse_log":
        distribution = (optuna.distributions.IntDistribution(low, high, log=True) if is_int
                        else optuna.distributions.FloatDistribution(low, high, log=True))
        mirror = _mirror(low, high, int if is_int else float)
        return ParamMapping(hp.name + MIRRORED, distribution, mirror, mirror)
    log = hp.sampling == "log"
    if is_int:
        step = 1 if log else (hp.step or 1)
        distribution = optuna.distributions.IntDistribution(
            low, int(_grid_high(low, high, step)), log=log, step=step)
        return ParamMapping(hp.name, distribution, int, int)
    if hp.step is not None:
        distribution = optuna.distributions.FloatDistribution(
            low, float(_grid_high(low, high, hp.step)), step=hp.step)
    else:
        distribution = optuna.distributions.FloatDistribution(low, high, log=log)
    return ParamMapping(hp.name, distribution, float, float)


def mapping(hp) -> ParamMapping:
    """The Optuna parameter of the KerasTuner hyperparameter ``hp``.

    Raises:
        TypeError: for a hyperparameter type KerasTuner does not ship.
    """
    categorical = optuna.distributions.CategoricalDistribution
    if isinstance(hp, kt_hp.Fixed):
        return ParamMapping(hp.name, categorical([hp.value]), _identity, _identity)
    if isinstance(hp, kt_hp.Boolean):
        return ParamMapping(hp.name, categorical([False, True]), bool, bool)
    if isinstance(hp, kt_hp.Choice):
        return ParamMapping(hp.name, categorical(list(hp.values)), _identity, _identity)
    if isinstance(hp, (kt_hp.Int, kt_hp.Float)):
        return _numerical(hp)
    raise TypeError("Argument `hp` must be a KerasTuner Choice, Boolean, Fixed, Int or Float "
                    f"hyperparameter. Received: hp={hp!r}")


def suggest(trial, hp):
    """Ask the ``optuna.Trial`` for ``hp`` and return its KerasTuner value.

    Raises:
        ValueError: the study holds this parameter name with a distribution
            Optuna cannot change to ``hp``'s (another hyperparameter of the same
            name, in another conditional scope, with other choices, another
            sampling or another type); the message names the hyperparameter.
    """
    param = mapping(hp)
    with _naming_refusals(hp, param):
        return param.to_value(_ask(trial, param))


def check_shared_names(space) -> None:
    """Refuse, before any trial, two hyperparameters of ``space`` that map to one Optuna
    name with distributions a study cannot hold both of (Optuna keeps one per name: two
    conditional scopes registering ``units`` with other choices, another sampling, or
    ``Int`` and ``Float``); KerasTuner itself allows them.

    Raises:
        ValueError: naming the hyperparameter and both scopes.
    """
    first = {}
    for hp in space:
        param = mapping(hp)
        if param.name not in first:
            first[param.name] = (hp, param)
            continue
        other, other_param = first[param.name]
        try:
            optuna.distributions.check_distribution_compatibility(other_param.distribution,
                                                                  param.distribution)
        except ValueError as error:
            raise ValueError(
                f"Argument `hypermodel` registers the hyperparameter {hp.name!r} twice, "
                f"{_scope(other)} as {other_param.distribution} and {_scope(hp)} as "
                f"{param.distribution}; an Optuna study keeps one distribution per name "
                f"({error}). Give them different names (e.g. '<scope>_{hp.name}')."
            ) from error


def _scope(hp) -> str:
    """Where ``hp`` is active, in words: ``"when kind in ['big']"`` or ``"always"``."""
    scopes = " and ".join(f"{c.name} in {list(c.values)}" for c in hp.conditions if hasattr(c, "values"))
    return f"when {scopes}" if scopes else "always"


@contextlib.contextmanager
def _naming_refusals(hp, param: ParamMapping):
    """Re-raise Optuna's refusal of a parameter (``"CategoricalDistribution does not
    support dynamic value space."``) with the hyperparameter it is about."""
    try:
        yield
    except ValueError as error:
        raise ValueError(
            f"Optuna refused the hyperparameter {hp.name!r} (active {_scope(hp)}) as parameter "
            f"{param.name!r} with {param.distribution}: {error} The study holds that name with another "
            "distribution, as when two conditional scopes register one name with other values, "
            "another sampling or another type. Give them different names "
            f"(e.g. '<scope>_{hp.name}')."
        ) from error


def fix_value(storage, trial_id: int, hp, value):
    """Record the KerasTuner ``value`` as the parameter of ``hp`` of the storage's trial
    ``trial_id`` (in ``hp``'s distribution, as an enqueued trial's fixed parameter is)
    and return its KerasTuner value; a parameter recorded already keeps its value."""
    param = mapping(hp)
    recorded = storage.get_trial(trial_id).params
    if param.name not in recorded:
        recorded = {param.name: param.to_param(value)}
        with _naming_refusals(hp, param):
            storage.set_trial_param(trial_id, param.name,
                                    param.distribution.to_internal_repr(recorded[param.name]),
                                    param.distribution)
    return param.to_value(recorded[param.name])


def _ask(trial, param: ParamMapping):
    """``trial.suggest_*`` for the mapping's distribution."""
    distribution = param.distribution
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(param.name, distribution.choices)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return trial.suggest_int(param.name, distribution.low, distribution.high,
                                 step=distribution.step, log=distribution.log)
    return trial.suggest_float(param.name, distribution.low, distribution.high,
                               step=distribution.step, log=distribution.log)


def active_values(space, choose: Callable) -> dict:
    """Walk ``space`` (hyperparameters in registration order) and ``choose(hp)`` a
    value for each one that is active given the values chosen before it: the
    parameters of an inactive conditional scope are never asked."""
    values = keras_tuner.HyperParameters()
    for hp in space:
        values.merge([hp])
        if values.is_active(hp):
            values.values[hp.name] = choose(hp)
    return values.values


def optuna_params(space, values: dict) -> dict:
    """The Optuna parameters (names and values) of the KerasTuner ``values``: those of
    the hyperparameters active given ``values``, so of two hyperparameters of one name
    in exclusive conditional scopes, the active one maps the value."""
    given = keras_tuner.HyperParameters()
    given.values = dict(values)
    params = {}
    for hp in space:
        if hp.name in values and given.is_active(hp):
            param = mapping(hp)
            params[param.name] = param.to_param(values[hp.name])
    return params


class AskingHyperParameters(keras_tuner.HyperParameters):
    """``HyperParameters`` that ask ``ask(hp)`` for every hyperparameter registered
    for the first time while active (a model's build reaching it), instead of
    giving it its default. Pickles (and copies) as plain ``HyperParameters``, so
    a trial sent to another process takes KerasTuner's defaults there."""

    ask: Callable | None = None

    def _registered(self, register, *args, **kwargs):
        known, count = set(self.values), len(self.space)
        value = register(*args, **kwargs)
        added = set(self.values) - known
        if self.ask is None or len(self.space) == count or not added:
            return value
        hp = self.space[-1]
        self.values[hp.name] = self.ask(hp)
        return self.values[hp.name]

    def Choice(self, *args, **kwargs):  # noqa: N802 (KerasTuner's names)
        return self._registered(super().Choice, *args, **kwargs)

    def Int(self, *args, **kwargs):  # noqa: N802
        return self._registered(super().Int, *args, **kwargs)

    def Float(self, *args, **kwargs):  # noqa: N802
        return self._registered(super().Float, *args, **kwargs)

    def Boolean(self, *args, **kwargs):  # noqa: N802
        return self._registered(super().Boolean, *args, **kwargs)

    def Fixed(self, *args, **kwargs):  # noqa: N802
        return self._registered(super().Fixed, *args, **kwargs)

    def __reduce__(self):
        return keras_tuner.HyperParameters.from_config, (self.get_config(),)


__all__ = ["AskingHyperParameters", "INDEX", "MIRRORED", "ParamMapping", "active_values",
           "check_shared_names", "fix_value", "mapping", "optuna_params", "suggest"]
