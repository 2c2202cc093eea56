"""Optuna samplers by name, seeded per trial so that a seeded search is
reproducible and workers sharing one study never draw in step.

Names: ``"tpe"`` (multivariate TPE with groups, so conditional parameters are
modelled within their own scope, and the constant liar, so parallel workers
spread out; Watanabe 2023), ``"random"``, ``"cmaes"`` (CMA-ES on the numeric
parameters, random search on the others), ``"gp"`` (Gaussian-process Bayesian
optimization; needs PyTorch), ``"nsga2"`` (NSGA-II, for several objectives),
``"qmc"`` (scrambled Sobol points). Any ``optuna.samplers.BaseSampler`` object
is used as it is given.

Seeding: a by-name sampler is made afresh for every trial with the seed
``SeedSequence([seed, trial.number])``. A sequential search therefore draws
the same values for the same seed, and N workers started with the same seed
on one study draw different values, since every trial has its own number
(one seed shared by N samplers would make N workers propose the same trial).
QMC is the exception: its points come from one scrambled sequence that the
study's workers share (Optuna hands out the indices), so it keeps ``seed``.

Start-up trials: TPE and GP draw their first ``n_startup_trials`` (Optuna: 10)
at random, and NSGA-II its first generation (``population_size``, Optuna: 50).
A KerasTuner search is often shorter than that (``max_trials`` defaults to
10), and would then be random search under another name. Given
``max_trials``, these samplers start modelling after a fifth of the search
(:func:`startup_trials`: at least 2 trials, at least 4 for NSGA-II's
generation; never more than Optuna's default), so most of a short search's
trials are chosen by the model.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np

from keras_trainkit.tuning.optuna_required import optuna
from keras_trainkit.utils.validation import MissingPackage

SAMPLERS = ("tpe", "random", "cmaes", "gp", "nsga2", "qmc")


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number``'s sampler in a search seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])


def startup_trials(max_trials: int | None, optuna_default: int, minimum: int = 2) -> int:
    """The random trials a model-based sampler draws before it models:
    ``min(optuna_default, max(minimum, max_trials // 5))``, or Optuna's default
    when ``max_trials`` is not known."""
    if max_trials is None:
        return optuna_default
    return min(optuna_default, max(minimum, max_trials // 5))


def _make(name: str, seed: int | None, max_trials: int | None):
    samplers = optuna.samplers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                       constant_liar=True,
                                       n_startup_trials=startup_trials(max_trials, 10))
        if name == "random":
            return samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            return samplers.CmaEsSampler(seed=seed)
        if name == "gp":
            return samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(max_trials, 10))
        if name == "nsga2":
            return samplers.NSGAIISampler(
                seed=seed, population_size=startup_trials(max_trials, 50, minimum=4))
        return samplers.QMCSampler(seed=seed)


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A by-name sampler made anew for each trial with the seed
    :func:`trial_seed` ``(seed, trial.number)``.

    The samplers it makes keep their state in the study (CMA-ES's, NSGA-II's
    generations) or rebuild it from the trials (TPE, GP), so a fresh one per
    trial samples as one long-lived one would, with its own random stream.
    """

    def __init__(self, name: str, seed: int, *, max_trials: int | None = None):
        self.name = name
        self.seed = seed
        self.max_trials = max_trials
        self.current = _make(name, seed, max_trials)

    def before_trial(self, study, trial):
        self.current = _make(self.name, trial_seed(self.seed, trial.number), self.max_trials)
        self.current.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.current.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.current.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):
        self.current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.current.reseed_rng()

    def __repr__(self):
        return f"TrialSeededSampler({self.name!r}, seed={self.seed})"


# The packages Optuna's samplers need beyond Optuna itself.
_NEEDS = {"gp": ("torch", "Optuna's GPSampler runs on PyTorch", "pip install torch"),
          "cmaes": ("cmaes", "Optuna's CmaEsSampler runs on it",
                    'pip install "keras-trainkit[optuna]" (or: pip install cmaes)')}


def _require(sampler: str) -> None:
    if sampler not in _NEEDS:
        return
    module, why, command = _NEEDS[sampler]
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise MissingPackage(f"sampler={sampler!r} needs the package {module!r} ({why}): "
                             f"{command}") from error


def get_sampler(sampler, seed: int | None, multi_objective: bool,
                max_trials: int | None = None):
    """The Optuna sampler for ``sampler`` (a name of :data:`SAMPLERS` or a sampler object);
    a by-name TPE, GP or NSGA-II sampler starts modelling after
    :func:`startup_trials` ``(max_trials, ...)`` trials.

    Raises:
        ValueError: for an unknown name, or CMA-ES with several objectives.
        ImportError: ``"gp"`` without PyTorch or ``"cmaes"`` without ``cmaes``,
            saying what to install.
    """
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ValueError(f"Argument `sampler` must be one of {', '.join(SAMPLERS)} or an "
                         f"optuna.samplers sampler. Received: sampler={sampler!r}")
    if sampler == "cmaes" and multi_objective:
        raise ValueError("Argument `sampler` cannot be 'cmaes' with several objectives: CMA-ES "
                         "optimizes one. Use 'nsga2', 'tpe', 'gp' or 'random'. "
                         f"Received: sampler={sampler!r}")
    _require(sampler)
    if sampler == "qmc" or seed is None:
        return _make(sampler, seed, max_trials)
    return TrialSeededSampler(sampler, seed, max_trials=max_trials)


__all__ = ["SAMPLERS", "TrialSeededSampler", "get_sampler", "startup_trials", "trial_seed"]
