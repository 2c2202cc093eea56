"""NaN values in the pruning rules, against Optuna's own pruners run on the same values.

Optuna prunes a trial whose intermediate value is NaN (where its rule judges it),
leaves NaN values of the other trials out of its median (``np.nanpercentile``) and
never records a NaN at a successive-halving rung. Before, our rules never pruned a
NaN trial (``nan < median`` is false), never pruned anything once one other trial was
NaN (the median of a list holding NaN is NaN), and ranked a rung by a sort that NaN
leaves unordered (a worst trial was kept in 4 of the 24 orders of its rivals).
"""

import itertools
import math

import pytest

from keras_trainkit.tuning.pruning import ASHAPruner, MedianPruner

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.ERROR)
NAN = float("nan")


def _optuna_prunes(pruner, direction, earlier, last):
    """Whether Optuna's ``pruner`` prunes a trial reporting ``last`` at step 1, after
    the ``earlier`` trials each reported one value at step 1 and completed (each asked
    ``should_prune``, as a running trial is, so successive halving records its rungs)."""
    study = optuna.create_study(direction=direction, pruner=pruner)
    for value in earlier:
        trial = study.ask()
        trial.report(value, 1)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, 0.0 if math.isnan(value) else value)
    trial = study.ask()
    trial.report(last, 1)
    return bool(trial.should_prune())


def _ours_prunes(rule, direction, earlier, last):
    """Our rule on the same values: larger is better, so a minimized value is negated."""
    sign = 1.0 if direction == "maximize" else -1.0
    return rule.decide(0, sign * last, [sign * v for v in earlier]) is not None


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_median_prunes_a_nan_trial_as_optuna_does(direction):
    earlier = [0.5, 0.6] if direction == "maximize" else [-0.5, -0.6]
    reference = _optuna_prunes(optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
                               direction, earlier, NAN)
    assert reference is True
    assert _ours_prunes(MedianPruner(startup_trials=2, warmup_epochs=0), direction, earlier,
                        NAN) is reference  # was False


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
@pytest.mark.parametrize("last", [0.1, 0.9])
def test_median_leaves_a_nan_of_another_trial_out_as_optuna_does(direction, last):
    sign = 1.0 if direction == "maximize" else -1.0
    earlier, last = [0.5 * sign, NAN, 0.6 * sign], last * sign
    reference = _optuna_prunes(optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
                               direction, earlier, last)
    assert reference is (abs(last) == 0.1)
    assert _ours_prunes(MedianPruner(startup_trials=3, warmup_epochs=0), direction, earlier,
                        last) is reference  # the worst trial (0.1) was kept


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_asha_prunes_a_nan_trial_at_a_rung_as_optuna_does(direction):
    sign = 1.0 if direction == "maximize" else -1.0
    earlier = [0.5 * sign, 0.6 * sign]
    optuna_asha = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2,
                                                         min_early_stopping_rate=0)
    assert _optuna_prunes(optuna_asha, direction, earlier, NAN) is True
    assert _ours_prunes(ASHAPruner(min_epochs=1, reduction_factor=2), direction, earlier, NAN)


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_asha_ranks_a_rung_without_the_nan_of_another_trial_in_any_order(direction):
    """Rivals 0.5, 0.6, 0.7 and a diverged trial: Optuna keeps the top 4 // 2 = 2 of
    the values at the rung, so 0.1 stops and 0.7 goes on, whatever the trial order."""
    sign = 1.0 if direction == "maximize" else -1.0
    rule = ASHAPruner(min_epochs=1, reduction_factor=2)
    for order in itertools.permutations([0.5, 0.6, 0.7, NAN]):
        earlier = [sign * v for v in order]
        for last in (0.1, 0.7):
            optuna_asha = optuna.pruners.SuccessiveHalvingPruner(
                min_resource=1, reduction_factor=2, min_early_stopping_rate=0)
            reference = _optuna_prunes(optuna_asha, direction, earlier, sign * last)
            assert reference is (last == 0.1)
            assert _ours_prunes(rule, direction, earlier, sign * last) is reference, order


def test_nan_is_judged_only_where_the_rule_judges():
    """Warm-up, startup and the epochs between rungs stay unjudged, NaN or not, as in
    Optuna (its median counts startup trials before it looks at the value)."""
    assert MedianPruner(startup_trials=1, warmup_epochs=2).decide(1, NAN, [0.5]) is None
    assert MedianPruner(startup_trials=3, warmup_epochs=0).decide(4, NAN, [0.5, 0.6]) is None
    assert ASHAPruner(min_epochs=2, reduction_factor=3).decide(2, NAN, [0.5]) is None
    # every other trial diverged: no median to compare with, as Optuna's NaN percentile
    assert MedianPruner(startup_trials=1, warmup_epochs=0).decide(3, 0.2, [NAN, NAN]) is None
