"""Train a chain of jobs with crash-safe checkpoints; optionally die by SIGKILL (run by test_resume.py).

Usage: _resume_script.py CKPT_ROOT OUT_DIR [KILL]

Runs, one after the other in this process, the jobs of ``JOBS``; each trains with
``checkpoint_dir=CKPT_ROOT/<job>``, writes its final variables (model variables, seed
generator states included, and optimizer variables) to ``OUT_DIR/<job>.npz`` and prints
``steps <job> N``, the training steps this process ran for it. A rerun of the same
command resumes every job from its checkpoint (a finished job runs 0 steps).

KILL: "JOB:at_step:S" (SIGKILL once this process ran S steps of JOB) or
"JOB:mid_write:K" (SIGKILL while JOB's K-th checkpoint file of this process is half
written, before its rename).

The two logical CPU devices of the MirroredStrategy jobs are configured before
TensorFlow initializes; op determinism is on.
"""

import os
import signal
import sys

import numpy as np
import tensorflow as tf

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
tf.config.experimental.enable_op_determinism()

import keras

from keras_trainkit.optimizers import AutoClip
from keras_trainkit.training import Trainer
from keras_trainkit.utils import checkpoints

# job: (input, strategy); 3 epochs each, 8 steps an epoch for "arrays", 10 for the others.
JOBS = {
    "arrays": ("arrays", "default"),
    "dataset": ("dataset", "default"),
    "mirrored_dataset": ("dataset", "mirrored"),
    "mirrored_arrays": ("arrays", "mirrored"),
}

root, out_dir = sys.argv[1], sys.argv[2]
kill_job, kill_mode, kill_at = (sys.argv[3].split(":") if len(sys.argv) > 3 else (None, None, 0))
kill_at = int(kill_at)
state = {"job": None, "writes": 0}

write_atomically = checkpoints.write_atomically


def dying_commit(path, data):
    """``checkpoints.write_atomically`` that dies half-way through the chosen checkpoint file."""
    if state["job"] == kill_job and kill_mode == "mid_write" and path.endswith(".npz"):
        state["writes"] += 1
        if state["writes"] == kill_at:
            with open(f"{path}.tmp-{os.getpid()}", "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.fsync(handle.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
    write_atomically(path, data)


checkpoints.write_atomically = dying_commit


class Steps(keras.callbacks.Callback):
    """Counts the steps this process ran (a call may run several) and kills at ``at_step``."""

    def __init__(self, kill_at=None):
        super().__init__()
        self.steps, self.begin, self.kill_at = 0, 0, kill_at

    def on_train_batch_begin(self, batch, logs=None):
        self.begin = batch

    def on_train_batch_end(self, batch, logs=None):
        self.steps += batch + 1 - self.begin
        if self.kill_at is not None and self.steps >= self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def data(n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = (x @ rng.normal(size=(5, 1)) + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def run(job):
    kind, strategy_kind = JOBS[job]
    if strategy_kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy(
            ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    else:
        strategy = tf.distribute.get_strategy()
    counter = Steps(kill_at if (job == kill_job and kill_mode == "at_step") else None)
    fit = {"epochs": 3, "verbose": 0, "callbacks": [counter],
           "checkpoint_dir": os.path.join(root, job)}
    if job == "arrays":  # the array path with accumulation and a stateful transform
        x, y = data(64)
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="tanh"),
                                  keras.layers.Dense(1)])
        trainer = Trainer(model, keras.optimizers.Adam(0.01), "mse", jit_compile=False, seed=3,
                          gradient_accumulation_steps=2,
                          gradient_transforms=[AutoClip(percentile=50.0)])
        trainer.fit(x, y, batch_size=8, checkpoint_every_n_steps=3, **fit)
    else:
        x, y = data(80)
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="tanh"),
                                      keras.layers.Dropout(0.2, seed=1), keras.layers.Dense(1)])
            extra = {"gradient_accumulation_steps": 3, "steps_per_execution": 2} if (
                job == "mirrored_arrays") else {}
            trainer = Trainer(model, keras.optimizers.Adam(0.01), "mse", jit_compile=False,
                              seed=3, strategy=strategy, **extra)
        assert trainer.strategy.num_replicas_in_sync == (2 if strategy_kind == "mirrored" else 1)
        if kind == "dataset":
            # 80 examples in batches of 8: 10 steps an epoch, a new shuffle order each epoch.
            dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(32, seed=7).batch(8)
            trainer.fit(dataset.prefetch(2), checkpoint_every_n_steps=4, **fit)
        else:
            trainer.fit(x, y, batch_size=8, checkpoint_every_n_steps=4, **fit)
    np.savez(os.path.join(out_dir, f"{job}.npz"),
             *[keras.ops.convert_to_numpy(v) for v in model.variables],
             *[keras.ops.convert_to_numpy(v) for v in model.optimizer.variables])
    print("steps", job, counter.steps, flush=True)


os.makedirs(out_dir, exist_ok=True)
for name in JOBS:
    state["job"], state["writes"] = name, 0
    run(name)
