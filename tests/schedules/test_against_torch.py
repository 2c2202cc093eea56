"""Each schedule against its ``torch.optim.lr_scheduler`` counterpart over 1,000+ steps.

Step alignment: see ``helpers.torch_learning_rates``; Keras evaluates
``schedule(optimizer.iterations)`` before the update that increments it, so
update k uses ``schedule(k)``, and torch's update k uses the scheduler at
``last_epoch = k``.
"""

import pytest

from keras_trainkit import schedules
from tests.schedules.helpers import assert_matches, torch_learning_rates, values

torch = pytest.importorskip("torch")
L = torch.optim.lr_scheduler


@pytest.mark.parametrize(
    "total, pct_start, anneal, div, final_div, three_phase",
    [
        (1000, 0.3, "cos", 25.0, 1e4, False),
        (1237, 0.3, "cos", 25.0, 1e4, False),  # fractional phase ends (p*T - 1 = 370.1)
        (1500, 0.25, "linear", 10.0, 100.0, False),
        (2000, 0.3, "cos", 25.0, 1e4, True),
        (1111, 0.4, "linear", 5.0, 1e3, True),
    ],
)
def test_one_cycle_matches_torch_one_cycle_lr(total, pct_start, anneal, div, final_div, three_phase):
    max_lr = 0.4
    ours = schedules.OneCycle(
        max_lr,
        total_steps=total,
        pct_start=pct_start,
        anneal_strategy=anneal,
        div_factor=div,
        final_div_factor=final_div,
        three_phase=three_phase,
    )
    reference = torch_learning_rates(
        lambda opt: L.OneCycleLR(
            opt,
            max_lr=max_lr,
            total_steps=total,
            pct_start=pct_start,
            anneal_strategy=anneal,
            div_factor=div,
            final_div_factor=final_div,
            three_phase=three_phase,
            cycle_momentum=False,
        ),
        total,
        max_lr,
    )
    assert_matches(values(ours, total), reference)


@pytest.mark.parametrize(
    "mode, up, down, gamma",
    [
        ("triangular", 150, None, 1.0),
        ("triangular", 150, 250, 1.0),
        ("triangular2", 100, 60, 1.0),
        ("exp_range", 120, None, 0.9993),
    ],
)
def test_cyclical_matches_torch_cyclic_lr(mode, up, down, gamma):
    steps, base, top = 2000, 1e-3, 6e-2
    ours = schedules.CyclicalLearningRate(base, top, step_size=up, step_size_down=down, mode=mode, gamma=gamma)
    reference = torch_learning_rates(
        lambda opt: L.CyclicLR(
            opt, base, top, step_size_up=up, step_size_down=down, mode=mode, gamma=gamma, cycle_momentum=False
        ),
        steps,
        base,
    )
    assert_matches(values(ours, steps), reference)


@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_cosine_annealing_matches_torch_cosine_annealing_lr(alpha):
    steps, lr = 1500, 0.1
    decay_steps = steps - 1  # torch reaches eta_min at last_epoch == T_max, then climbs again
    ours = schedules.CosineAnnealing(lr, decay_steps=decay_steps, alpha=alpha)
    reference = torch_learning_rates(
        lambda opt: L.CosineAnnealingLR(opt, T_max=decay_steps, eta_min=alpha * lr), steps, lr
    )
    assert_matches(values(ours, steps), reference)


@pytest.mark.parametrize("first, t_mul, alpha", [(170, 1, 0.0), (100, 2, 0.01), (40, 3, 0.05)])
def test_warm_restarts_match_torch_cosine_annealing_warm_restarts(first, t_mul, alpha):
    steps, lr = 2500, 0.1
    ours = schedules.CosineAnnealingWarmRestarts(lr, first_decay_steps=first, t_mul=float(t_mul), alpha=alpha)
    reference = torch_learning_rates(
        lambda opt: L.CosineAnnealingWarmRestarts(opt, T_0=first, T_mult=t_mul, eta_min=alpha * lr), steps, lr
    )
    assert_matches(values(ours, steps), reference)


@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_linear_decay_matches_torch_linear_lr(alpha):
    steps, lr, budget = 1500, 0.1, 1200  # past the budget both stay at the floor
    ours = schedules.LinearDecay(lr, decay_steps=budget, alpha=alpha)
    reference = torch_learning_rates(
        lambda opt: L.LinearLR(opt, start_factor=1.0, end_factor=alpha, total_iters=budget), steps, lr
    )
    assert_matches(values(ours, steps), reference)


def test_linear_warmup_of_a_constant_matches_torch_linear_lr():
    steps, lr, warm, factor = 1200, 0.1, 300, 0.01
    ours = schedules.Warmup(lr, warmup_steps=warm, start_learning_rate=factor * lr)
    reference = torch_learning_rates(
        lambda opt: L.LinearLR(opt, start_factor=factor, end_factor=1.0, total_iters=warm), steps, lr
    )
    assert_matches(values(ours, steps), reference)


def test_step_decay_matches_torch_step_lr():
    steps, lr = 2000, 0.1
    ours = schedules.StepDecay(lr, step_size=300, gamma=0.5)
    reference = torch_learning_rates(lambda opt: L.StepLR(opt, step_size=300, gamma=0.5), steps, lr)
    assert_matches(values(ours, steps), reference)


def test_warmup_then_cosine_matches_torch_sequential_lr():
    # Warmup(offset=True) restarts the wrapped schedule's count at the boundary,
    # exactly as SequentialLR calls the next scheduler's step(0) at its milestone.
    steps, lr, warm, factor = 2000, 0.1, 300, 0.01
    ours = schedules.Warmup(
        schedules.CosineAnnealing(lr, decay_steps=steps - warm), warmup_steps=warm, start_learning_rate=factor * lr
    )
    reference = torch_learning_rates(
        lambda opt: L.SequentialLR(
            opt,
            [L.LinearLR(opt, start_factor=factor, total_iters=warm), L.CosineAnnealingLR(opt, T_max=steps - warm)],
            milestones=[warm],
        ),
        steps,
        lr,
    )
    assert_matches(values(ours, steps), reference)


def test_sequential_schedule_matches_torch_sequential_lr():
    steps, lr = 2000, 0.1
    ours = schedules.SequentialSchedule(
        [
            schedules.LinearDecay(lr, decay_steps=500, alpha=0.1),
            schedules.CosineAnnealing(lr, decay_steps=700, alpha=0.2),
            schedules.StepDecay(lr, step_size=100, gamma=0.5),
        ],
        boundaries=[500, 1200],
    )
    reference = torch_learning_rates(
        lambda opt: L.SequentialLR(
            opt,
            [
                L.LinearLR(opt, start_factor=1.0, end_factor=0.1, total_iters=500),
                L.CosineAnnealingLR(opt, T_max=700, eta_min=0.2 * lr),
                L.StepLR(opt, step_size=100, gamma=0.5),
            ],
            milestones=[500, 1200],
        ),
        steps,
        lr,
    )
    assert_matches(values(ours, steps), reference)
