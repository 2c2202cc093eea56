"""Fit y = a + b x + c x^2 + d x^3 to sin(x) on [-pi, pi] with GradientTape and RMSprop.

The course's third-order polynomial example, written as a plain TensorFlow
``GradientTape`` loop: the features (x, x^2, x^3) feed one linear unit, the
loss is the summed squared error, and ``keras.optimizers.RMSprop`` updates the
four coefficients. The fitted polynomial approaches the Taylor-like least-squares
fit of sin on [-pi, pi] (roughly y = 0.857 x - 0.093 x^3).

Run: ``python examples/polynomial_fit.py`` (``--smoke`` for a short run).
"""

from __future__ import annotations

import argparse
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def fit(steps: int = 2000, learning_rate: float = 1e-3, seed: int = 0, log_every: int = 100):
    """Return the coefficients ``(a, b, c, d)`` and the final summed squared error."""
    keras.utils.set_random_seed(seed)
    x = tf.linspace(-math.pi, math.pi, 2000)
    y = tf.sin(x)
    features = tf.stack([x, x**2, x**3], axis=1)  # (2000, 3)
    weights = tf.Variable(tf.random.normal((3,)), name="b_c_d")
    bias = tf.Variable(tf.random.normal(()), name="a")
    optimizer = keras.optimizers.RMSprop(learning_rate)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y_pred = bias + tf.linalg.matvec(features, weights)
            loss = tf.reduce_sum(tf.square(y_pred - y))  # MSELoss(reduction="sum")
        grads = tape.gradient(loss, [bias, weights])
        optimizer.apply(grads, [bias, weights])
        return loss  # a fresh tensor; nothing accumulates across steps

    loss = None
    for t in range(steps):
        loss = step()
        if log_every and t % log_every == log_every - 1:
            print(t, float(loss))
    a = float(bias.numpy())
    b, c, d = (float(v) for v in weights.numpy())
    return (a, b, c, d), float(loss)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short run for CI")
    args = parser.parse_args(argv)
    steps = 300 if args.smoke else 2000
    (a, b, c, d), loss = fit(steps=steps, learning_rate=1e-2 if args.smoke else 1e-3,
                             log_every=100)
    print(f"Result: y = {a:.4f} + {b:.4f} x + {c:.4f} x^2 + {d:.4f} x^3  (sum of squares {loss:.2f})")
    # Least-squares reference from NumPy: what the optimizer should approach.
    x = np.linspace(-math.pi, math.pi, 2000)
    reference = np.linalg.lstsq(np.stack([np.ones_like(x), x, x**2, x**3], 1), np.sin(x), rcond=None)[0]
    print("least squares: y = {:.4f} + {:.4f} x + {:.4f} x^2 + {:.4f} x^3".format(*reference))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
