"""Where to start: a 10-layer MLP on MNIST-1D from six initializations.

For ReLU and tanh networks of depth 10 this script starts from
uniform[-1, 1], Glorot (Xavier) uniform, He normal, orthogonal, GeometricFan
(Defazio & Bottou 2019) and LSUV (Mishkin & Matas 2016), prints the variance of
every hidden layer's activations on a batch of real data, and the loss and test
accuracy after a few epochs of Adam. What it shows (course notes, "where to start"):

* uniform[-1, 1] ignores the fan-in: ReLU activations explode layer after layer,
  tanh units saturate, and neither network learns;
* Glorot and orthogonal (gain 1) halve the ReLU variance at each layer (the
  factor 2 He adds is missing), so deep ReLU activations shrink;
* He, GeometricFan and LSUV keep the variance roughly constant with depth.

Measured results are in docs/initialization.md.

Usage::

    python examples/initialization.py            # full run (a few minutes on a CPU)
    python examples/initialization.py --smoke    # CI smoke mode (seconds)

``KERAS_TRAINKIT_SMOKE=1`` also selects the smoke mode.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_trainkit as tk  # noqa: E402

INITIALIZERS = {
    "uniform[-1,1]": lambda: keras.initializers.RandomUniform(-1.0, 1.0),
    "glorot": lambda: "glorot_uniform",
    "he": lambda: "he_normal",
    "orthogonal": lambda: "orthogonal",
    "geometric": lambda: tk.initializers.GeometricFan(scale=2.0),
    "lsuv": lambda: "orthogonal",  # then lsuv_initialize on a data batch
}


def build(name, activation, depth, width, batch, seed):
    keras.utils.set_random_seed(seed)
    model = tk.models.mlp((40,), 10, depth=depth, width=width, activation=activation,
                          kernel_initializer=INITIALIZERS[name]())
    if name == "lsuv":
        tk.initializers.lsuv_initialize(model, batch, seed=seed)
    return model


def activation_variances(model, batch, depth):
    probe = keras.Model(model.inputs[0], [model.get_layer(f"act_{i}").output for i in range(depth)])
    return [float(np.var(keras.ops.convert_to_numpy(out))) for out in probe(batch)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="short CI mode")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    smoke = args.smoke or os.environ.get("KERAS_TRAINKIT_SMOKE") == "1"
    depth = 10
    width = 16 if smoke else 128
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"argument --epochs: must be >= 1, got {args.epochs}")
    epochs = (1 if smoke else 5) if args.epochs is None else args.epochs
    n_train = 256 if smoke else None

    (x, y), (x_test, y_test) = tk.datasets.load_mnist1d()
    mean, std = x.mean(), x.std()  # the training set's, for the test set too
    x, x_test = (x - mean) / std, (x_test - mean) / std
    if n_train:
        x, y, x_test, y_test = x[:n_train], y[:n_train], x_test[:128], y_test[:128]
    batch = x[:256]

    for activation in ("relu", "tanh"):
        variances, results = {}, {}
        for name in INITIALIZERS:
            model = build(name, activation, depth, width, batch, args.seed)
            variances[name] = activation_variances(model, batch, depth)
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"], run_eagerly=smoke)
            history = model.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
            _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
            results[name] = (history.history["loss"][-1], accuracy)
        names = list(INITIALIZERS)
        print(f"\n{activation} MLP, depth {depth}, width {width}: variance of each hidden layer's "
              "activations on a batch of MNIST-1D")
        print(f"{'layer':<7}" + "".join(f"{n:>15}" for n in names))
        for i in range(depth):
            print(f"act_{i:<3}" + "".join(f"{variances[n][i]:>15.3g}" for n in names))
        print(f"after {epochs} epoch(s) of Adam(1e-3):")
        print(f"{'loss':<7}" + "".join(f"{results[n][0]:>15.4g}" for n in names))
        print(f"{'test acc':<7}" + "".join(f"{results[n][1]:>15.3f}" for n in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
