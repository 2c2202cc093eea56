"""Train with crash-safe checkpoints; optionally die by SIGKILL (run by test_resume.py).

Usage: _resume_script.py CHECKPOINT_DIR OUT.npz [MODE]
MODE: "none" (default), "mid_write:K" (SIGKILL while the K-th checkpoint file is half
written, before its rename) or "at_step:S" (SIGKILL after global training step S).
"""

import os
import signal
import sys

import numpy as np
import tensorflow as tf

tf.config.experimental.enable_op_determinism()

import keras  # noqa: E402

from keras_trainkit.optimizers import AutoClip  # noqa: E402
from keras_trainkit.training import Trainer, _checkpoint  # noqa: E402

directory, out = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "none"
callbacks = []

if mode.startswith("mid_write:"):
    target = int(mode.split(":")[1])
    commit = _checkpoint._commit
    written = []

    def dying_commit(path, data):
        if path.endswith(".npz"):
            written.append(path)
            if len(written) == target:
                with open(f"{path}.tmp-{os.getpid()}", "wb") as handle:
                    handle.write(data[: len(data) // 2])
                    handle.flush()
                    os.fsync(handle.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
        commit(path, data)

    _checkpoint._commit = dying_commit
elif mode.startswith("at_step:"):
    target = int(mode.split(":")[1])

    class Die(keras.callbacks.Callback):
        seen = 0

        def on_train_batch_end(self, batch, logs=None):
            Die.seen += 1
            if Die.seen == target:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks.append(Die())


class Count(keras.callbacks.Callback):
    steps = 0

    def on_train_batch_end(self, batch, logs=None):
        Count.steps += 1


callbacks.append(Count())
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 5)).astype("float32")
y = (x @ rng.normal(size=(5, 1)) + 0.1 * rng.normal(size=(64, 1))).astype("float32")
model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="tanh"),
                          keras.layers.Dense(1)])
trainer = Trainer(model, keras.optimizers.Adam(0.01), "mse", jit_compile=False, seed=3,
                  gradient_accumulation_steps=2, gradient_transforms=[AutoClip(percentile=50.0)])
trainer.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=callbacks,
            checkpoint_dir=directory, checkpoint_every_n_steps=3)
np.savez(out, *model.get_weights(), *[keras.ops.convert_to_numpy(v) for v in model.optimizer.variables])
print("steps", Count.steps)
