"""Gradients of y = (a + b)(b + 1) from GradientTape, checked against the chain rule by hand.

The course's computation graph: c = a + b, d = b + 1, y = c * d. By the chain rule

    dy/da = dy/dc * dc/da = d * 1 = b + 1
    dy/db = dy/dc * dc/db + dy/dd * dd/db = d * 1 + c * 1 = (b + 1) + (a + b) = a + 2b + 1

so at a = 2, b = 1: y = 6, dy/da = 2, dy/db = 5.

Run: ``python examples/computation_graph.py`` (``--smoke`` checks a few random points too).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def tape_gradients(a_value: float, b_value: float):
    """``(y, dy/da, dy/db)`` from ``tf.GradientTape`` (the course's persistent tape)."""
    a = tf.Variable([a_value], dtype=tf.float32)
    b = tf.Variable([b_value], dtype=tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        c = a + b
        d = b + 1
        y = c * d
    grad_a = tape.gradient(y, a)
    grad_b = tape.gradient(y, b)
    del tape  # a persistent tape holds its graph until deleted
    return float(y[0]), float(grad_a[0]), float(grad_b[0])


def chain_rule(a: float, b: float):
    """The same three numbers worked out by hand (see the module docstring)."""
    c, d = a + b, b + 1
    return c * d, d, d + c


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short run for CI")
    parser.parse_args(argv)  # --smoke is accepted for CI; the example is already short
    points = [(2.0, 1.0)]
    points += [tuple(p) for p in np.random.default_rng(0).uniform(-3, 3, size=(5, 2))]
    for a, b in points:
        tape = tape_gradients(a, b)
        hand = chain_rule(a, b)
        ok = np.allclose(tape, hand, rtol=1e-5, atol=1e-5)
        print(f"a={a:+.3f} b={b:+.3f}  tape: y={tape[0]:+.4f} dy/da={tape[1]:+.4f} "
              f"dy/db={tape[2]:+.4f}   hand: y={hand[0]:+.4f} dy/da={hand[1]:+.4f} "
              f"dy/db={hand[2]:+.4f}   {'OK' if ok else 'MISMATCH'}")
        if not ok:
            return 1
    print("GradientTape agrees with the chain rule at every point.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
