"""Non-dominated sorting (keras_trainkit.tuning.pareto) against its definition and
against Optuna's own Pareto front."""

import keras_tuner
import numpy as np
import pytest

from keras_trainkit.tuning.pareto import pareto_ranks, rank_trials


def _dominates(a, b, maximize):
    signed_a = [x if up else -x for x, up in zip(a, maximize)]
    signed_b = [x if up else -x for x, up in zip(b, maximize)]
    return all(x >= y for x, y in zip(signed_a, signed_b)) and signed_a != signed_b


def test_a_small_case_by_hand():
    # (accuracy up, parameters down)
    points = [[0.9, 100], [0.8, 50], [0.85, 120], [0.7, 60], [0.9, 100], [0.6, 200]]
    assert pareto_ranks(points, [True, False]).tolist() == [0, 0, 1, 1, 0, 2]
    assert pareto_ranks(points, [False, True]).tolist() == [2, 2, 1, 1, 2, 0]


@pytest.mark.parametrize("seed", range(5))
def test_ranks_satisfy_the_definition(seed):
    """Every dominated point ranks after its dominator, and every point of front k > 0
    is dominated by one of front k - 1: these two properties define the fronts."""
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 6, size=(40, 3)).astype(float)  # many ties and repeats
    maximize = [True, False, True]
    ranks = pareto_ranks(points, maximize)
    for i, a in enumerate(points):
        for j, b in enumerate(points):
            if _dominates(a, b, maximize):
                assert ranks[i] < ranks[j]
        if ranks[i] > 0:
            assert any(_dominates(points[j], a, maximize)
                       for j in np.flatnonzero(ranks == ranks[i] - 1))


def test_the_first_front_is_optunas():
    optuna = pytest.importorskip("optuna")
    rng = np.random.default_rng(3)
    points = rng.integers(0, 8, size=(30, 2)).astype(float)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for point in points:
        study.add_trial(optuna.trial.create_trial(values=list(point)))
    ranks = pareto_ranks(points, [True, False])
    assert sorted(np.flatnonzero(ranks == 0).tolist()) == sorted(t.number for t in study.best_trials)


class _Trial:
    def __init__(self, name, values):
        self.name, self.values = name, values


def test_rank_trials_orders_fronts_then_the_first_objective():
    trials = [_Trial("small", [0.80, 50]), _Trial("worse", [0.70, 60]),
              _Trial("large", [0.95, 300]), _Trial("middle", [0.90, 100])]
    ranked = rank_trials(trials, lambda t: t.values, [keras_tuner.Objective("acc", "max"),
                                                         keras_tuner.Objective("params", "min")])
    assert [t.name for t in ranked] == ["large", "middle", "small", "worse"]
    assert rank_trials([], lambda t: t.values, [keras_tuner.Objective("acc", "max")]) == []
