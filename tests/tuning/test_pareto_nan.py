"""Non-dominated sorting with NaN objectives and mismatched directions, against a
brute-force front in numpy and Optuna's own Pareto front.

Before, a point with a NaN objective (a diverged trial) compared false with every
other point, so nothing dominated it: it sat on the first front, and with the best
first objective (the smallest model, say) ``rank_trials`` put it first, so the
multi-objective search's best trial was one that diverged. Optuna fails a trial told
a NaN value and leaves it out of ``study.best_trials``.
"""

import keras_tuner
import numpy as np
import pytest

from keras_trainkit.tuning.pareto import pareto_ranks, rank_trials

NAN = float("nan")


def _brute_front(points, maximize):
    """Indices of the rows with no NaN that no other such row dominates."""
    signed = np.asarray(points, float) * np.where(maximize, 1.0, -1.0)
    rows = [i for i in range(len(signed)) if not np.isnan(signed[i]).any()]
    return sorted(i for i in rows if not any(
        np.all(signed[j] >= signed[i]) and np.any(signed[j] > signed[i]) for j in rows))


@pytest.mark.parametrize("maximize", [[False, True], [True, False], [True, True], [False, False]])
def test_a_nan_objective_is_on_no_front_as_in_optuna(maximize):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = np.random.default_rng(0)
    points = rng.integers(0, 5, size=(24, 2)).astype(float)  # ties and duplicates
    points[[0, 5, 9], [0, 1, 0]] = NAN
    points[13] = [NAN, NAN]
    study = optuna.create_study(directions=["maximize" if m else "minimize" for m in maximize])
    for point in points:
        trial = study.ask()
        with pytest.warns(UserWarning) if np.isnan(point).any() else _no_warning():
            study.tell(trial, list(point))
    optuna_front = sorted(t.number for t in study.best_trials)
    assert optuna_front == _brute_front(points, maximize)
    ranks = pareto_ranks(points, maximize)
    assert sorted(np.flatnonzero(ranks == 0).tolist()) == optuna_front  # NaN rows were in it
    finite = ~np.isnan(points).any(axis=1)
    assert ranks[~finite].min() > ranks[finite].max()


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_diverged_trial_is_not_ranked_best():
    """(parameters down, accuracy up): the diverged smallest model was ranked first."""

    class Trial:
        def __init__(self, name, values):
            self.name, self.values = name, values

    trials = [Trial("diverged", [10, NAN]), Trial("small", [20, 0.90]),
              Trial("large", [30, 0.95]), Trial("worse", [40, 0.80])]
    objectives = [keras_tuner.Objective("params", "min"), keras_tuner.Objective("acc", "max")]
    ranked = rank_trials(trials, lambda t: t.values, objectives)
    assert [t.name for t in ranked] == ["small", "large", "worse", "diverged"]


def test_all_nan_points_share_one_last_front():
    assert pareto_ranks([[NAN, 1.0], [1.0, NAN]], [True, True]).tolist() == [0, 0]
    assert pareto_ranks([[1.0, 2.0], [NAN, 1.0], [2.0, 1.0], [0.0, 0.0]],
                        [True, True]).tolist() == [0, 2, 0, 1]


def test_one_direction_per_objective_is_required():
    """``maximize=[True]`` for two objectives was broadcast to both: a minimized second
    objective was silently maximized."""
    with pytest.raises(ValueError, match=r"`maximize` must give one direction per objective "
                                         r"\(2\). Received: maximize=\[True\]"):
        pareto_ranks([[1.0, 2.0], [2.0, 1.0]], [True])
    with pytest.raises(ValueError, match=r"`points` must be an \(n, k\) array"):
        pareto_ranks([1.0, 2.0], [True])
