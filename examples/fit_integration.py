"""The MLP of ``examples/custom_loop.py`` on 8x8 digits, trained the ``model.fit`` way.

The same keras-trainkit components drop into ``compile()`` / ``fit()`` unchanged:
the ``Warmup``/``CosineAnnealing`` schedule goes to the optimizer, gradient
clipping comes from ``TransformedOptimizer`` wrapping AdamW with
``ClipByGlobalNorm``, and ``callbacks.EarlyStopping`` goes to ``fit``.

Run: ``python examples/fit_integration.py`` (``--smoke`` for a short run).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_trainkit as tk  # noqa: E402
from keras_trainkit.optimizers import TransformedOptimizer  # noqa: E402
from keras_trainkit.optimizers.transforms import ClipByGlobalNorm  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short run for CI")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"argument --epochs: must be >= 1, got {args.epochs}")
    epochs = (2 if args.smoke else 40) if args.epochs is None else args.epochs

    keras.utils.set_random_seed(0)
    (x, y), (x_test, y_test) = tk.datasets.load_digits()
    model = tk.models.mlp(x.shape[1:], 10, depth=2, width=128)
    batch_size = 64
    steps = epochs * -(-int(0.9 * len(x)) // batch_size)
    schedule = tk.schedules.Warmup(tk.schedules.CosineAnnealing(3e-3, decay_steps=steps),
                                   warmup_steps=max(1, steps // 20))
    optimizer = TransformedOptimizer(keras.optimizers.AdamW(schedule, weight_decay=1e-2),
                                     [ClipByGlobalNorm(1.0)])
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], steps_per_execution=4)
    history = model.fit(
        x, y, batch_size=batch_size, epochs=epochs, validation_split=0.1,
        callbacks=[tk.callbacks.EarlyStopping(monitor="val_loss", patience=5,
                                              restore_best_weights=True)],
        verbose=2,
    )
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"epochs run: {len(history.epoch)}; test loss {loss:.4f}, test accuracy {accuracy:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
