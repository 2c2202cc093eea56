"""Run in a subprocess: Trainer vs model.fit with the same seed and deterministic ops.

Prints the max absolute difference of the final weights as JSON.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_trainkit.training import Trainer  # noqa: E402


def build(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(3),
    ])
    return model


def compare(mode):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 6)).astype("float32")
    y = rng.integers(0, 3, size=70)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    model = build(1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, metrics=["accuracy"])
    if mode == "arrays":
        ref = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        ref = model.fit(ds, epochs=3, verbose=0)
    expected = model.get_weights()

    model = build(1)
    trainer = Trainer(model, keras.optimizers.Adam(1e-2), loss, ["accuracy"], jit_compile=False,
                      shuffle=False, steps_per_execution=2 if mode == "dataset" else 1)
    if mode == "arrays":
        got = trainer.fit(x, y, batch_size=16, epochs=3, verbose=0)
    else:
        got = trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=3, verbose=0)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(expected, model.get_weights()))
    loss_diff = max(abs(a - b) for a, b in zip(ref.history["loss"], got.history["loss"]))
    acc_diff = max(abs(a - b) for a, b in zip(ref.history["accuracy"], got.history["accuracy"]))
    return {"weights": diff, "loss": loss_diff, "accuracy": acc_diff}


def main():
    tf.config.experimental.enable_op_determinism()
    print(json.dumps({mode: compare(mode) for mode in sys.argv[1:]}))


if __name__ == "__main__":
    main()
