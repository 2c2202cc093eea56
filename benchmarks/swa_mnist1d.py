"""SWA vs. the final epoch of the same run: the MNIST-1D CNN over several seeds.

For each seed one run is trained (Adam, or SGD with momentum, at a constant learning rate, the
reference CNN of ``keras_trainkit.models.cnn`` with BatchNorm). ``SWA`` averages
the weights of the last epochs (``--start`` on) and only swaps the average in at
the very end, so the training trajectory is exactly that of a run without SWA:
the "no SWA" figure is the test accuracy of the final-epoch weights (read just
before the swap), the "SWA" figure that of the averaged weights after the
BatchNorm statistics were recomputed over the training data.

Run:  python benchmarks/swa_mnist1d.py --seeds 0 1 2 --epochs 30 --start 20
      python benchmarks/swa_mnist1d.py --optimizer sgd --learning-rate 0.05
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_trainkit as tk  # noqa: E402
from keras_trainkit.callbacks import SWA  # noqa: E402


class _FinalEpochAccuracy(keras.callbacks.Callback):
    """Test accuracy of the weights at the end of the last epoch, before SWA swaps."""

    def __init__(self, x_test, y_test, epochs):
        super().__init__()
        self.x_test, self.y_test, self.epochs = x_test, y_test, epochs
        self.accuracy = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epochs - 1:
            self.accuracy = _accuracy(self.model, self.x_test, self.y_test)


def _accuracy(model, x, y):
    logits = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def _optimizer(name, learning_rate):
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    return keras.optimizers.Adam(learning_rate)


def run(seed, epochs, start, learning_rate, batch_size, optimizer="adam"):
    (x, y), (x_test, y_test) = tk.datasets.load_mnist1d()
    keras.utils.set_random_seed(seed)
    model = tk.models.cnn((40,), 10)
    model.compile(optimizer=_optimizer(optimizer, learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    final = _FinalEpochAccuracy(x_test, y_test, epochs)  # listed first: runs before SWA's swap
    swa = SWA(start_epoch=start, bn_data=x, bn_batch_size=batch_size)
    data = tk.datasets.to_dataset(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    model.fit(data, epochs=epochs, verbose=0, callbacks=[final, swa])
    return final.accuracy, _accuracy(model, x_test, y_test), swa.n_averaged


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--start", type=int, default=20, help="first averaged epoch (0-based)")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                        help="Adam, or SGD with momentum 0.9; constant learning rate")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    name = "Adam" if args.optimizer == "adam" else "SGD(momentum=0.9)"
    print(f"MNIST-1D CNN, {name}, learning rate {args.learning_rate:g}, {args.epochs} epochs, SWA over epochs "
          f"{args.start + 1}-{args.epochs}, batch {args.batch_size}")
    print(f"{'seed':>4} {'final epoch':>12} {'SWA':>8} {'SWA - final':>12} {'snapshots':>10} {'seconds':>8}")
    rows = []
    for seed in args.seeds:
        began = time.perf_counter()
        final, averaged, n = run(seed, args.epochs, args.start, args.learning_rate, args.batch_size,
                                 args.optimizer)
        rows.append((final, averaged))
        print(f"{seed:>4} {final:>12.4f} {averaged:>8.4f} {averaged - final:>+12.4f} {n:>10} "
              f"{time.perf_counter() - began:>8.1f}", flush=True)
    finals, swas = np.array(rows).T
    print(f"mean {finals.mean():>12.4f} {swas.mean():>8.4f} {swas.mean() - finals.mean():>+12.4f}")
    print(f"SWA >= final epoch on {int(np.sum(swas >= finals))}/{len(rows)} seeds")


if __name__ == "__main__":
    main()
