"""Time Muon's Newton-Schulz iteration alone, per matrix shape and compute precision.

Muon's cost over Adam is its Newton-Schulz iteration (``ns_steps=5``; each step
three matrix products on the wide orientation of an ``m x n`` kernel,
``2 m^2 n + 2 m^3 + 2 m^2 n`` flops). This script times
``keras_trainkit.optimizers.muon.newton_schulz`` on one matrix under ``jax.jit``
and prints milliseconds and the achieved TFLOP/s for each precision:

* ``float32`` at JAX's default matmul precision (TF32 tensor cores on an NVIDIA GPU),
* ``float32`` at ``precision="highest"`` (true float32 products),
* ``bfloat16`` inputs (what Keller Jordan's reference Muon runs the iteration in).

It answers whether Muon's step time on a GPU is bound by the iteration's flops
(achieved rate near the chip's matmul rate) or by something else.

    KERAS_BACKEND=jax python benchmarks/newton_schulz_precision.py --shapes 784x512 2048x2048
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402

from keras_trainkit.optimizers.muon import newton_schulz  # noqa: E402


def flops(rows: int, cols: int, steps: int) -> float:
    """Flops of ``steps`` Newton-Schulz steps on the wide orientation of ``rows x cols``."""
    m, n = min(rows, cols), max(rows, cols)
    return steps * (2 * m * m * n + 2 * m ** 3 + 2 * m * m * n)


def time_one(rows, cols, dtype, precision, steps, repeats):
    """Median seconds of one jitted ``newton_schulz`` call (synced), after a warm-up call."""
    matrix = jax.random.normal(jax.random.key(0), (rows, cols), dtype=dtype)

    @jax.jit
    def run(x):
        with jax.default_matmul_precision(precision):
            return newton_schulz(x, steps, 1e-7)

    run(matrix).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(matrix).block_until_ready()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["784x512", "512x512", "2048x2048", "4096x4096"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        parser.error(f"needs KERAS_BACKEND=jax, not {keras.backend.backend()!r}")
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, ns_steps={args.steps}, "
          f"median of {args.repeats} jitted calls")
    print(f"{'shape':>10s} {'precision':>22s} {'ms':>8s} {'TFLOP/s':>8s}")
    for shape in args.shapes:
        rows, cols = (int(side) for side in shape.split("x"))
        for label, dtype, precision in (("float32 (default)", jnp.float32, "default"),
                                        ("float32 (highest)", jnp.float32, "highest"),
                                        ("bfloat16", jnp.bfloat16, "default")):
            seconds = time_one(rows, cols, dtype, precision, args.steps, args.repeats)
            rate = flops(rows, cols, args.steps) / seconds / 1e12
            print(f"{shape:>10s} {label:>22s} {seconds * 1e3:8.3f} {rate:8.2f}", flush=True)


if __name__ == "__main__":
    main()
