"""Per-step time of every keras_trainkit optimizer, wrapper and transform against Adam.

One process, one model: an MLP 784-512-512-10 (ReLU, softmax cross-entropy) on a
random batch of 128, trained with ``model.fit``: a compiled train step
(``tf.function``), with Keras's default ``jit_compile="auto"`` unless
``--jit-compile true|false`` says otherwise ("auto" is XLA on GPU and a plain
TensorFlow graph on CPU-only machines, where Keras disables XLA). For each
candidate a fresh model is compiled and fitted once to warm up (tracing and
compilation excluded); then ``--repeats`` timed fits of ``--steps`` steps each,
alternating with as many steps of an Adam model, also warmed up; the figures are
the median time per step and the median of the per-pair ratios. Ratios are against ``keras.optimizers.Adam`` (for wrappers and
transforms, which wrap Adam here, that is their overhead over the optimizer
they wrap).

Candidates are read from the registries, so classes added later are timed
without editing this file: every element-wise optimizer of
``keras_trainkit.optimizers`` with its defaults, ``Shampoo`` (refresh every 10
steps; eigendecomposition and coupled-Newton inverse roots), the wrappers
(``OptimizerWrapper``, ``Lookahead``, ``SAM`` through ``SAMModel``,
``LayerwiseLearningRate``, ``TransformedOptimizer``) around Adam, and every
gradient transform of ``keras_trainkit.optimizers.transforms`` inside
``TransformedOptimizer(Adam, [transform])``. Whatever is missing or cannot be
built with default arguments is reported as skipped.

Usage::

    python benchmarks/optimizer_step.py              # full: 50 steps x 6 repeats
    python benchmarks/optimizer_step.py --quick      # smoke: 5 steps x 2 repeats
    python benchmarks/optimizer_step.py --only Lookahead,SAM,Shampoo --jit-compile true

Targets (issue 3): element-wise <= 1.3x Adam; a transform or Lookahead <= +10%
over what it wraps (AutoClip, AGC <= +15%); SAM <= 2.1x; second order <= 3x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

TARGETS = {
    "elementwise": 1.3,
    "wrapper": 1.10,
    "transform": 1.10,
    "AutoClip": 1.15,
    "AdaptiveGradientClipping": 1.15,
    "SAM": 2.1,
    "second-order": 3.0,
}


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(512, activation="relu", name="dense1"),
            keras.layers.Dense(512, activation="relu", name="dense2"),
            keras.layers.Dense(10, name="logits"),
        ]
    )


def candidates():
    """``[(label, kind, make_optimizer, use_sam_model)]`` from the registries."""
    out = [("keras.Adam", "baseline", lambda: keras.optimizers.Adam(1e-3), False)]
    skipped = []
    try:
        import keras_trainkit.optimizers as kto
    except Exception as error:  # noqa: BLE001 - report, do not crash the benchmark
        return out, [f"keras_trainkit.optimizers ({error})"]

    classes = kto.REGISTRY.classes
    wrapper_base = getattr(kto, "OptimizerWrapper", None)

    def adam():
        return keras.optimizers.Adam(1e-3)

    for name, cls in sorted(classes.items()):
        if wrapper_base is not None and issubclass(cls, wrapper_base):
            continue
        if name == "Shampoo":
            for block in (128, 64):
                for root in ("eigh", "newton"):
                    out.append((
                        f"Shampoo({root}, block {block}, every 10)",
                        "second-order",
                        lambda cls=cls, block=block, root=root: cls(
                            max_block_size=block, preconditioning_compute_steps=10, inverse_root=root
                        ),
                        False,
                    ))
            continue
        out.append((name, "elementwise", lambda cls=cls: cls(), False))

    wrappers = {
        "OptimizerWrapper": ("wrapper", lambda: classes["OptimizerWrapper"](adam()), False),
        "Lookahead": ("wrapper", lambda: classes["Lookahead"](adam()), False),
        "LayerwiseLearningRate": (
            "wrapper",
            lambda: classes["LayerwiseLearningRate"](adam(), {"dense1/*": 0.5, "dense2/*": 0.75}),
            False,
        ),
        "SAM": ("SAM", lambda: classes["SAM"](adam(), rho=0.05), True),
    }
    for name, (kind, make, sam) in wrappers.items():
        if name in classes:
            out.append((f"{name}(Adam)", kind, make, sam))
        else:
            skipped.append(name)

    transformed = classes.get("TransformedOptimizer")
    transforms = getattr(kto, "transforms", None)
    if transformed is None or transforms is None:
        skipped.append("TransformedOptimizer / transforms")
    else:
        for name, tcls in sorted(transforms.REGISTRY.classes.items()):
            kind = name if name in TARGETS else "transform"
            out.append((f"{name}(Adam)", kind, lambda tcls=tcls: transformed(adam(), [tcls()]), False))
    return out, skipped


class Timed:
    """A compiled, warmed-up model whose ``run(steps)`` returns seconds per step."""

    def __init__(self, make, sam_model, x, y, jit_compile):
        import tensorflow as tf

        model = _mlp()
        if sam_model:
            from keras_trainkit.optimizers import SAMModel

            model = SAMModel(model)
        model.compile(
            optimizer=make(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
        )
        self.data = tf.data.Dataset.from_tensors((x, y)).repeat()  # the same batch every step
        model.fit(self.data, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)  # warm-up: trace + compile
        self.model = model
        self.jit_compile = model.jit_compile

    def run(self, steps):
        start = time.perf_counter()
        self.model.fit(self.data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        return (time.perf_counter() - start) / steps


def time_against(baseline, candidate, steps, repeats):
    """Alternate baseline and candidate runs; medians of the time and of the per-pair ratio.

    Alternating cancels most of the drift of a shared, busy machine: each ratio
    compares two runs taken seconds apart, in ABBA order.
    """
    times, ratios = [], []
    for repeat in range(repeats):
        if repeat % 2:  # ABBA order: no side is always the first of a pair
            cand = candidate.run(steps)
            base = baseline.run(steps)
        else:
            base = baseline.run(steps)
            cand = candidate.run(steps)
        times.append(cand)
        ratios.append(cand / base)
    return statistics.median(times), statistics.median(ratios)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: 5 steps x 2 repeats")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed repeat (default 50)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 6)")
    parser.add_argument(
        "--jit-compile", choices=["auto", "true", "false"], default="auto",
        help='XLA for the train step: Keras\'s "auto" (default: off on CPU-only machines), true or false',
    )
    parser.add_argument("--only", default="", help="comma-separated label prefixes to run")
    args = parser.parse_args(argv)
    steps = args.steps or (5 if args.quick else 50)
    repeats = args.repeats or (2 if args.quick else 6)
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]

    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 784)).astype("float32")
    y = rng.integers(0, 10, size=(128,)).astype("int32")

    found, skipped = candidates()
    if jit is not True:  # coupled Newton is the XLA variant; without XLA eigh is faster
        found = [c for c in found if "newton" not in c[0]]
    only = [s for s in args.only.split(",") if s]
    if only:
        found = [c for c in found if c[0] == "keras.Adam" or any(c[0].startswith(o) for o in only)]

    print(f"MLP 784-512-512-10, batch 128, jit_compile={jit!r}, {steps} steps x {repeats} repeats, median")
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    print(f"{'candidate':36s} {'kind':26s} {'ms/step':>9s} {'x Adam':>8s} {'target':>8s}")
    baseline = Timed(found[0][2], False, x, y, jit)
    resolved = baseline.jit_compile
    for label, kind, make, sam in found:
        try:
            candidate = baseline if label == "keras.Adam" else Timed(make, sam, x, y, jit)
            seconds, ratio = time_against(baseline, candidate, steps, repeats)
        except Exception as error:  # noqa: BLE001 - one failing candidate must not stop the run
            print(f"{label:36s} {kind:26s} failed: {type(error).__name__}: {str(error)[:80]}")
            continue
        target = TARGETS.get(kind)
        flag = "" if target is None else ("ok" if ratio <= target else "OVER")
        target_text = "" if target is None else f"<= {target:.2f}"
        print(f"{label:36s} {kind:26s} {seconds * 1e3:9.2f} {ratio:8.2f} {target_text:>8s} {flag}", flush=True)
        del candidate
    print(f"jit_compile resolved to: {resolved}")
    for name in skipped:
        print(f"skipped (not available): {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
