"""Draw the schedule plots of ``docs/schedules.md`` (``docs/img/schedules/*.png``).

Run from the repository root:

    python scripts/plot_schedules.py            # writes docs/img/schedules/
    python scripts/plot_schedules.py --out DIR  # somewhere else
    python scripts/plot_schedules.py --only one_cycle warmup_types

Each plot is 600 x 300 pixels, made with ``keras_trainkit.schedules.plot_schedule``.
"""

from __future__ import annotations

import argparse
import os
import sys

STEPS = 1500


def figures():
    """``{file stem: (schedule, steps, title)}`` for every plot in the docs."""
    from keras_trainkit import schedules as s

    return {
        "step_decay": (s.StepDecay(0.1, step_size=300, gamma=0.5), STEPS, "StepDecay(0.1, step_size=300, gamma=0.5)"),
        "linear_decay": (s.LinearDecay(0.1, decay_steps=1200, alpha=0.05), STEPS,
                         "LinearDecay(0.1, decay_steps=1200, alpha=0.05)"),
        "cosine_annealing": (s.CosineAnnealing(0.1, decay_steps=1200, alpha=0.1), STEPS,
                             "CosineAnnealing(0.1, decay_steps=1200, alpha=0.1)"),
        "cosine_annealing_warm_restarts": (
            s.CosineAnnealingWarmRestarts(0.1, first_decay_steps=100, t_mul=2.0, m_mul=0.8, alpha=0.05), STEPS,
            "CosineAnnealingWarmRestarts(0.1, 100, t_mul=2, m_mul=0.8, alpha=0.05)"),
        "one_cycle": (s.OneCycle(0.1, total_steps=STEPS), STEPS, "OneCycle(0.1, total_steps=1500)"),
        "one_cycle_three_phase": (
            s.OneCycle(0.1, total_steps=STEPS, anneal_strategy="linear", three_phase=True), STEPS,
            "OneCycle(0.1, 1500, anneal_strategy='linear', three_phase=True)"),
        "cyclical_triangular2": (
            s.CyclicalLearningRate(0.01, 0.1, step_size=150, mode="triangular2"), STEPS,
            "CyclicalLearningRate(0.01, 0.1, step_size=150, mode='triangular2')"),
        "cyclical_exp_range": (
            s.CyclicalLearningRate(0.01, 0.1, step_size=100, step_size_down=200, mode="exp_range", gamma=0.999),
            STEPS, "CyclicalLearningRate(0.01, 0.1, 100, 200, mode='exp_range', gamma=0.999)"),
        "warmup": (
            s.Warmup(s.CosineAnnealing(0.1, decay_steps=1300), warmup_steps=200, start_learning_rate=0.001),
            STEPS, "Warmup(CosineAnnealing(0.1, 1300), warmup_steps=200, start=0.001)"),
        "warmup_types": None,  # drawn by hand below: three curves on one axis
        "sequential": (
            s.SequentialSchedule(
                [0.1, s.CosineAnnealing(0.1, decay_steps=600, alpha=0.05), s.StepDecay(0.05, 100, 0.5)],
                boundaries=[400, 1000],
            ),
            STEPS, "SequentialSchedule([0.1, CosineAnnealing, StepDecay], [400, 1000])"),
        "warmup_stable_decay": (
            s.WarmupStableDecay(0.1, total_steps=STEPS, warmup_steps=150, decay_steps=300, decay_type="1-sqrt"),
            STEPS, "WarmupStableDecay(0.1, 1500, warmup=150, decay=300, '1-sqrt')"),
        "inverse_sqrt_decay": (s.InverseSqrtDecay(0.1, warmup_steps=200), STEPS,
                               "InverseSqrtDecay(0.1, warmup_steps=200)"),
    }


def _warmup_types(path):
    """Linear, cosine and exponential warm-up of the same constant, on one axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from keras_trainkit import schedules as s

    figure = Figure(figsize=(6.0, 3.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for kind in ("linear", "cosine", "exponential"):
        schedule = s.Warmup(0.1, warmup_steps=300, start_learning_rate=0.001, warmup_type=kind)
        axes.plot(s.schedule_values(schedule, 400), label=kind, linewidth=1.5)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("learning rate")
    axes.set_title("Warmup(0.1, warmup_steps=300, start=0.001, warmup_type=...)", fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("docs", "img", "schedules"), help="output folder")
    parser.add_argument("--only", nargs="*", default=None, help="draw only these file stems")
    args = parser.parse_args(argv)
    from keras_trainkit.schedules import plot_schedule

    os.makedirs(args.out, exist_ok=True)
    written = []
    for stem, spec in figures().items():
        if args.only is not None and stem not in args.only:
            continue
        path = os.path.join(args.out, f"{stem}.png")
        if spec is None:
            _warmup_types(path)
        else:
            schedule, steps, title = spec
            plot_schedule(schedule, steps, path, title=title)
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in main(sys.argv[1:]):
        print(written_path)
