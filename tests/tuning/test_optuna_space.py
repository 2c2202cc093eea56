"""KerasTuner hyperparameters as Optuna distributions, samplers by name, and the
ImportError without Optuna. No training: fast."""

import importlib
import pickle
import sys
import warnings

import keras_tuner
import numpy as np
import pytest

optuna = pytest.importorskip("optuna")
scipy_stats = pytest.importorskip("scipy.stats")

from keras_trainkit.tuning import optuna_samplers, optuna_space  # noqa: E402
from keras_trainkit.tuning.spaces import OptimizerSpace  # noqa: E402

D = optuna.distributions


def _hp(register):
    hps = keras_tuner.HyperParameters()
    register(hps)
    return hps.space[-1]


def test_every_keras_tuner_type_maps_to_its_distribution():
    cases = [
        (lambda h: h.Choice("c", ["a", "b", "c"]), "c", D.CategoricalDistribution(["a", "b", "c"])),
        (lambda h: h.Boolean("b"), "b", D.CategoricalDistribution([False, True])),
        (lambda h: h.Fixed("f", 7), "f", D.CategoricalDistribution([7])),
        (lambda h: h.Int("i", 8, 30, step=4), "i", D.IntDistribution(8, 28, step=4)),
        (lambda h: h.Int("i", 1, 5), "i", D.IntDistribution(1, 5)),
        (lambda h: h.Int("i", 2, 64, sampling="log"), "i", D.IntDistribution(2, 64, log=True)),
        (lambda h: h.Float("x", 0.0, 1.0), "x", D.FloatDistribution(0.0, 1.0)),
        (lambda h: h.Float("x", 0.0, 1.0, step=0.3), "x", D.FloatDistribution(0.0, 0.9, step=0.3)),
        (lambda h: h.Float("x", 1e-4, 1e-1, sampling="log"), "x",
         D.FloatDistribution(1e-4, 1e-1, log=True)),
        (lambda h: h.Float("x", 0.9, 0.999, sampling="reverse_log"), "x:mirrored",
         D.FloatDistribution(0.9, 0.999, log=True)),
        (lambda h: h.Int("i", 2, 64, step=2, sampling="log"), "i:index", D.IntDistribution(0, 5)),
    ]
    for register, name, distribution in cases:
        param = optuna_space.mapping(_hp(register))
        assert (param.name, param.distribution) == (name, distribution)


def test_stepped_log_scales_give_exactly_keras_tuners_grid():
    int_hp = _hp(lambda h: h.Int("i", 2, 64, step=2, sampling="log"))
    float_hp = _hp(lambda h: h.Float("x", 1e-3, 1.0, step=10, sampling="log"))
    reverse = _hp(lambda h: h.Int("r", 1, 81, step=3, sampling="reverse_log"))
    assert [optuna_space.mapping(int_hp).to_value(k) for k in range(6)] == [2, 4, 8, 16, 32, 64]
    assert np.allclose([optuna_space.mapping(float_hp).to_value(k) for k in range(4)],
                       [1e-3, 1e-2, 1e-1, 1.0])
    # reverse_log mirrors the grid: 81 + 1 - 3**k
    assert [optuna_space.mapping(reverse).to_value(k) for k in range(5)] == [81, 79, 73, 55, 1]
    for hp in (int_hp, float_hp, reverse):
        param = optuna_space.mapping(hp)
        for k in range(param.distribution.high + 1):
            assert param.to_param(param.to_value(k)) == k


@pytest.mark.parametrize("sampling", ["log", "reverse_log", "linear"])
def test_sampled_values_follow_keras_tuners_own_distribution(sampling):
    """Sampling the mapped Optuna parameter at random gives the values KerasTuner's
    own random sampling gives (two-sample Kolmogorov-Smirnov test)."""
    hp = _hp(lambda h: h.Float("x", 0.9, 0.999, sampling=sampling))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    ours = []
    for _ in range(1500):
        trial = study.ask()
        ours.append(optuna_space.suggest(trial, hp))
        study.tell(trial, 0.0)
    theirs = [hp.random_sample(seed) for seed in range(1500)]
    assert scipy_stats.ks_2samp(ours, theirs).pvalue > 0.01
    assert min(ours) >= 0.9 and max(ours) <= 0.999


def test_conditional_hyperparameters_are_asked_only_when_active():
    hps = keras_tuner.HyperParameters()
    space = OptimizerSpace(families=("adamw", "sgd"))
    space.build(hps)
    for family in ("adamw", "sgd"):  # register both families' conditional parameters
        hps.values["optimizer"] = family
        space.build(hps)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(8):
        trial = study.ask()
        values = optuna_space.active_values(hps.space, lambda hp: optuna_space.suggest(trial, hp))
        other = "sgd" if values["optimizer"] == "adamw" else "adamw"
        assert not [name for name in trial.params if name.startswith(other + "_")]
        assert [name for name in trial.params if name.startswith(values["optimizer"] + "_")]
        assert optuna_space.optuna_params(hps.space, values) == trial.params
        study.tell(trial, 0.0)


def test_hyperparameters_registered_during_the_build_are_asked_from_the_trial():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    hps = optuna_space.AskingHyperParameters()
    hps.ask = lambda hp: optuna_space.suggest(trial, hp)
    units = hps.Int("units", 8, 64, step=8)
    rate = hps.Float("rate", 1e-4, 1e-1, sampling="log")
    with hps.conditional_scope("units", [1000]):  # never active
        hps.Float("never", 0.0, 1.0)
    assert (units, rate) == (trial.params["units"], trial.params["rate"])
    assert "never" not in trial.params
    assert hps.Int("units", 8, 64, step=8) == units  # asked once
    copy = pickle.loads(pickle.dumps(hps))
    assert type(copy) is keras_tuner.HyperParameters and copy.values == hps.values


def test_samplers_by_name_and_object():
    for name, cls in [("tpe", optuna.samplers.TPESampler), ("random", optuna.samplers.RandomSampler),
                      ("cmaes", optuna.samplers.CmaEsSampler), ("nsga2", optuna.samplers.NSGAIISampler),
                      ("qmc", optuna.samplers.QMCSampler), ("gp", optuna.samplers.GPSampler)]:
        if name == "gp":
            pytest.importorskip("torch")
        assert isinstance(optuna_samplers.get_sampler(name, None, False), cls)
        seeded = optuna_samplers.get_sampler(name, 1, False)
        assert isinstance(seeded if name == "qmc" else seeded.current, cls)
    mine = optuna.samplers.RandomSampler()
    assert optuna_samplers.get_sampler(mine, 1, False) is mine
    with pytest.raises(ValueError, match="Argument `sampler` must be one of .* Received: sampler='bo'"):
        optuna_samplers.get_sampler("bo", None, False)
    with pytest.raises(ValueError, match="cannot be 'cmaes' with several objectives"):
        optuna_samplers.get_sampler("cmaes", None, True)


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "qmc"])
def test_a_seeded_sampler_repeats_its_values_and_another_seed_does_not(name):
    def run(seed):
        study = optuna.create_study(sampler=optuna_samplers.get_sampler(name, seed, False))
        study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.3) ** 2
                       + t.suggest_int("n", 1, 9), n_trials=14)
        return [tuple(t.params.values()) for t in study.trials]

    assert run(5) == run(5)
    assert run(5) != run(6)


def _toy_search(name, max_trials, n_trials, seed=7):
    """The parameters of ``n_trials`` trials of a seeded search on a toy objective
    (two objectives for NSGA-II)."""
    two = name == "nsga2"
    study = optuna.create_study(directions=["minimize"] * (2 if two else 1),
                                sampler=optuna_samplers.get_sampler(name, seed, two, max_trials))

    def objective(trial):
        x, n = trial.suggest_float("x", -1, 1), trial.suggest_int("n", 1, 9)
        return ((x - 0.3) ** 2 + n, (x + 0.3) ** 2 - n) if two else (x - 0.3) ** 2 + n

    study.optimize(objective, n_trials=n_trials)
    return [tuple(t.params.values()) for t in study.trials]


def _shared_prefix(a, b):
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_startup_trials_is_a_fifth_of_the_search_within_optunas_default():
    assert [optuna_samplers.startup_trials(n, 10) for n in (3, 10, 25, 49, 50, 400, None)] == \
        [2, 2, 5, 9, 10, 10, 10]
    assert [optuna_samplers.startup_trials(n, 50, minimum=4) for n in (12, 40, 250, 1000)] == \
        [4, 8, 50, 50]


@pytest.mark.parametrize("name", ["tpe", "gp"])
@pytest.mark.parametrize("max_trials, random_trials", [(10, 2), (25, 5), (None, 10)])
def test_a_short_search_models_after_a_fifth_of_its_trials(name, max_trials, random_trials):
    """Random search with the same seed draws the same start-up trials; the model's
    trials differ. Optuna's fixed 10 would make a 10-trial search all random."""
    if name == "gp":
        pytest.importorskip("torch")
    random = _toy_search("random", None, 12)
    assert _shared_prefix(_toy_search(name, max_trials, 12), random) == random_trials


def test_nsga2s_first_generation_is_a_fifth_of_a_short_search():
    random = _toy_search("random", None, 12)  # same per-trial seeds, same first generation
    random_pairs = [(x, n) for x, n in random]
    nsga2 = _toy_search("nsga2", 12, 12)
    assert nsga2[:4] == random_pairs[:4]
    assert nsga2 != random_pairs  # later generations are bred, not drawn


def test_without_optuna_the_error_says_what_to_install(monkeypatch):
    for module in [m for m in sys.modules if m.startswith("keras_trainkit.tuning.optuna")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "optuna", None)  # "import optuna" raises ImportError
    with pytest.raises(ImportError, match=r'pip install "keras-trainkit\[optuna\]"'):
        importlib.import_module("keras_trainkit.tuning.optuna_search")
    from keras_trainkit import tuning
    with pytest.raises(ImportError, match=r"keras-trainkit\[optuna\]"):
        tuning.OptunaSearch  # noqa: B018
    import keras_trainkit.tuning.spaces  # noqa: F401  (the rest of the package still imports)


def test_a_retried_trial_takes_its_originals_place_and_a_surplus_trial_none():
    from keras_trainkit.tuning.optuna_oracle import SURPLUS_ATTR, _places

    state = optuna.trial.TrialState
    study = optuna.create_study()
    x = {"x": D.FloatDistribution(0, 1)}
    study.add_trial(optuna.create_trial(state=state.COMPLETE, value=1, params={"x": 0.1}, distributions=x))
    study.add_trial(optuna.create_trial(state=state.FAIL, params={"x": 0.2}, distributions=x))
    study.add_trial(optuna.create_trial(state=state.COMPLETE, value=1, params={"x": 0.3}, distributions=x))
    study.add_trial(optuna.create_trial(  # trial 1 run again after its worker died
        state=state.COMPLETE, value=1, params={"x": 0.2}, distributions=x,
        system_attrs={"failed_trial": 1, "retry_history": [1]}))
    study.add_trial(optuna.create_trial(state=state.FAIL, user_attrs={SURPLUS_ATTR: True}))
    study.add_trial(optuna.create_trial(state=state.FAIL))  # a trial that raised: it counts
    assert [t.number for t in _places(study.trials)] == [0, 3, 2, 5]


def test_a_name_in_two_conditional_scopes_maps_the_active_ones_value():
    """KerasTuner allows one name in two exclusive scopes; only the active one's value
    becomes an Optuna parameter (``units:index`` 2: 8 = 2 * 2**2 on the first grid,
    which KerasTuner's own defaults choose)."""
    hps = keras_tuner.HyperParameters()
    hps.Choice("kind", ["small", "big"])
    with hps.conditional_scope("kind", "small"):
        hps.Int("units", 2, 64, step=2, sampling="log", default=8)
    with hps.conditional_scope("kind", "big"):
        hps.Int("units", 3, 243, step=3, sampling="log")
    assert hps.values == {"kind": "small", "units": 8}
    defaults = optuna_space.active_values(hps.space, lambda hp: hp.default)
    params = optuna_space.optuna_params(hps.space, defaults)
    assert params == {"kind": "small", "units:index": 2}
    study = optuna.create_study()
    study.enqueue_trial(params)
    trial = study.ask()
    assert optuna_space.active_values(
        hps.space, lambda hp: optuna_space.suggest(trial, hp)) == hps.values
    big = optuna_space.optuna_params(hps.space, {"kind": "big", "units": 27})
    assert big == {"kind": "big", "units:index": 2}  # 27 = 3 * 3**2 on the second grid


@pytest.mark.parametrize("register_small, register_big", [
    (lambda hps: hps.Choice("units", [8, 16]), lambda hps: hps.Choice("units", [64, 128])),
    (lambda hps: hps.Int("units", 8, 16), lambda hps: hps.Int("units", 8, 128, sampling="log")),
    (lambda hps: hps.Int("units", 8, 16), lambda hps: hps.Float("units", 8.0, 16.0)),
], ids=["other choices", "log instead of linear", "float instead of int"])
def test_a_name_two_scopes_give_distributions_optuna_cannot_share_is_named(register_small, register_big):
    """Optuna keeps one distribution per parameter name in a study; where the other scope's
    hyperparameter needs an incompatible one, its refusal ("CategoricalDistribution does not
    support dynamic value space.", "Cannot set different distribution kind...") named neither
    the hyperparameter nor its scope."""
    hps = keras_tuner.HyperParameters()
    hps.Choice("kind", ["small", "big"])
    with hps.conditional_scope("kind", "small"):
        register_small(hps)
    with hps.conditional_scope("kind", "big"):
        register_big(hps)
    small, big = [hp for hp in hps.space if hp.name == "units"]
    study = optuna.create_study()
    first = study.ask()
    optuna_space.suggest(first, small)
    study.tell(first, 1.0)
    with pytest.raises(ValueError, match=r"hyperparameter 'units' \(active when kind in \['big'\]\)"
                                         r".*Give them different names"):
        optuna_space.suggest(study.ask(), big)


@pytest.mark.parametrize("low, high", [(0.01, 0.3), (0.9, 0.9999), (0.5, 0.999), (1e-3, 0.7)])
def test_a_reverse_log_default_comes_back_exactly_and_in_range(low, high):
    """KerasTuner's default of a Float is its ``min_value``; enqueued, it comes back as
    itself, with no out-of-range warning, and every mirrored value stays in range."""
    hp = _hp(lambda h: h.Float("beta", low, high, sampling="reverse_log"))
    assert hp.default == low
    study = optuna.create_study()
    study.enqueue_trial(optuna_space.optuna_params([hp], {"beta": hp.default}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trial = study.ask()
        assert optuna_space.suggest(trial, hp) == low
    param = optuna_space.mapping(hp)
    assert param.to_param(high) == low and param.to_value(low) == high
    for value in np.linspace(low, high, 101):
        mirrored = param.to_param(value)
        assert low <= mirrored <= high
        assert low <= param.to_value(mirrored) <= high
