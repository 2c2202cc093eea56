"""Crash-safe resume: SIGKILL mid-epoch, rerun, same final weights; a cut-short checkpoint is never loaded.

One chain of processes (``_resume_script.py``) covers four jobs: arrays, a
``tf.data.Dataset``, and both under ``MirroredStrategy`` over two logical CPU
devices. An uninterrupted process gives the reference weights; then the same
command is run again and again, each run killed by SIGKILL inside one job (the
next run resumes that job and starts the next), and a last run finishes. Each
job must end with the reference's variables (<= 1e-6, deterministic ops) having
run only the steps its checkpoint did not hold.
"""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.training import Trainer
from keras_trainkit.training.checkpointer import CHECKPOINT_FILE
from keras_trainkit.utils.checkpoints import CheckpointError, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests/training/_resume_script.py"
JOBS = ("arrays", "dataset", "mirrored_dataset", "mirrored_arrays")
FULL = {"arrays": 3 * 8, "dataset": 3 * 10, "mirrored_dataset": 3 * 10, "mirrored_arrays": 3 * 10}
# One SIGKILL per run, in the job after the one the previous kill hit:
# arrays: checkpoints every 3 steps, the 5th file, (1, 6), dies half written -> resume at (1, 3);
# dataset: killed after step 16, between checkpoints -> resume at (1, 4);
# mirrored_dataset: the 3rd file, the epoch end (1, 0), dies half written -> resume at (0, 8);
# mirrored_arrays (accumulation 3, 2 steps a call): killed after step 18 -> resume at (1, 4),
# with a partial accumulation (14 % 3 micro-batches) in the checkpoint.
KILLS = ("arrays:mid_write:5", "dataset:at_step:16", "mirrored_dataset:mid_write:3",
         "mirrored_arrays:at_step:18")


def run(ckpt, out, kill=None):
    args = [sys.executable, str(SCRIPT), str(ckpt), str(out)] + ([kill] if kill else [])
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT,
                            check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    steps = {line.split()[1]: int(line.split()[2])
             for line in result.stdout.splitlines() if line.startswith("steps ")}
    return SimpleNamespace(returncode=result.returncode, stderr=result.stderr, steps=steps)


def snapshot(ckpt):
    """Per job: the complete checkpoint's (epoch, step) and data-state flag, and the temporary files left."""
    state = {}
    for job in JOBS:
        folder = ckpt / job
        loaded = load_checkpoint(folder / CHECKPOINT_FILE)
        meta, blobs = (None, None) if loaded is None else loaded[1:]
        state[job] = SimpleNamespace(
            position=None if meta is None else (meta["epoch"], meta["step"]),
            data_state=bool(blobs),
            leftovers=sorted(f for f in os.listdir(folder) if ".tmp-" in f) if folder.exists() else [],
        )
    return state


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    reference = run(base / "ref" / "ckpt", base / "ref" / "out")
    runs = []
    for kill in KILLS + (None,):
        result = run(base / "ckpt", base / "out", kill)
        result.after = snapshot(base / "ckpt")
        runs.append(result)
        if result.returncode not in (0, -signal.SIGKILL):
            break
    return SimpleNamespace(base=base, reference=reference, runs=runs)


def killed(chain, index):
    result = chain.runs[index]
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    return result


def resumed(chain, index):
    assert len(chain.runs) > index, "an earlier run of the chain failed"
    result = chain.runs[index]
    assert result.returncode in (0, -signal.SIGKILL), result.stderr[-3000:]
    return result


def check_same(chain, job):
    with np.load(chain.base / "ref" / "out" / f"{job}.npz") as a, \
            np.load(chain.base / "out" / f"{job}.npz") as b:
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-6, err_msg=f"{job} {name}")


def test_uninterrupted_reference(chain):
    assert chain.reference.returncode == 0, chain.reference.stderr[-3000:]
    assert chain.reference.steps == FULL


def test_killed_while_writing_a_checkpoint_resumes_from_the_last_complete_one(chain):
    after = killed(chain, 0).after["arrays"]
    # The 5th write, (1, 6), died half written: its temporary file is all it left.
    assert after.position == (1, 3) and not after.data_state
    assert len(after.leftovers) == 1 and after.leftovers[0].startswith(CHECKPOINT_FILE + ".tmp-")
    rerun = resumed(chain, 1)
    assert rerun.steps["arrays"] == 5 + 8  # only the steps after (1, 3)
    check_same(chain, "arrays")
    assert not rerun.after["arrays"].leftovers


def test_dataset_input_killed_mid_epoch_resumes_to_the_uninterrupted_weights(chain):
    after = killed(chain, 1).after["dataset"]
    assert after.position == (1, 4) and after.data_state
    rerun = resumed(chain, 2)
    assert rerun.steps["arrays"] == 0  # finished job: restored at its end, nothing to run
    assert rerun.steps["dataset"] == FULL["dataset"] - 14
    check_same(chain, "dataset")


def test_mirrored_dataset_killed_while_writing_an_epoch_end_checkpoint(chain):
    after = killed(chain, 2).after["mirrored_dataset"]
    # The 3rd write, the epoch end (1, 0), died half written.
    assert after.position == (0, 8) and after.data_state
    assert len(after.leftovers) == 1 and after.leftovers[0].startswith(CHECKPOINT_FILE + ".tmp-")
    rerun = resumed(chain, 3)
    assert rerun.steps["mirrored_dataset"] == FULL["mirrored_dataset"] - 8
    check_same(chain, "mirrored_dataset")


def test_mirrored_arrays_killed_mid_epoch_with_a_partial_accumulation(chain):
    after = killed(chain, 3).after["mirrored_arrays"]
    assert after.position == (1, 4)
    rerun = resumed(chain, 4)
    assert rerun.returncode == 0
    assert rerun.steps == {"arrays": 0, "dataset": 0, "mirrored_dataset": 0,
                           "mirrored_arrays": FULL["mirrored_arrays"] - 14}
    check_same(chain, "mirrored_arrays")


# ----------------------------------------------------------------- in-process checks
def make():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    return Trainer(model, keras.optimizers.SGD(0.1), "mse", jit_compile=False, seed=0)


XY = (np.zeros((8, 3), "float32"), np.zeros((8, 1), "float32"))


def test_incomplete_checkpoint_is_refused(tmp_path):
    x, y = XY
    make().fit(x, y, batch_size=4, epochs=1, verbose=0, checkpoint_dir=str(tmp_path))
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="(?s)damaged or truncated.*Delete it"):
        make().fit(x, y, batch_size=4, epochs=2, verbose=0, checkpoint_dir=str(tmp_path))


def test_checkpoint_argument_checks(tmp_path):
    x, y = XY
    with pytest.raises(ValueError, match="Received: checkpoint_every_n_steps=0"):
        make().fit(x, y, verbose=0, checkpoint_dir=str(tmp_path), checkpoint_every_n_steps=0)
    with pytest.raises(ValueError, match="needs a `checkpoint_dir`"):
        make().fit(x, y, verbose=0, checkpoint_every_n_steps=2)


def test_checkpoint_of_arrays_is_refused_for_a_dataset(tmp_path):
    x, y = XY
    make().fit(x, y, batch_size=4, epochs=1, verbose=0, checkpoint_dir=str(tmp_path))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    with pytest.raises(ValueError, match="written for array inputs"):
        make().fit(dataset, epochs=2, verbose=0, checkpoint_dir=str(tmp_path))


@pytest.fixture
def no_global_seed():
    """No global TF seed, so that an unseeded shuffle is really unseeded (restored after)."""
    from tensorflow.python.eager import context

    previous = context.global_seed()
    tf.random.set_seed(None)
    yield
    tf.random.set_seed(previous)


def _generator():
    yield from zip(*XY)


UNREPRODUCIBLE = {
    "unseeded": (lambda d: d.shuffle(8), "unseeded random op"),
    "unseeded_inside_interleave": (
        lambda d: tf.data.Dataset.range(2).interleave(lambda _: d.shuffle(8), cycle_length=2),
        "unseeded random op"),
    "map_deterministic_false": (
        lambda d: d.map(lambda a, b: (a, b), num_parallel_calls=2, deterministic=False),
        "deterministic=False"),
    "options_deterministic_false": (
        lambda d: d.with_options(_options(deterministic=False)), "deterministic=False"),
    "stateful_map": (lambda d: d.map(lambda a, b: (a + tf.random.uniform(tf.shape(a)), b)),
                     "cannot be saved"),
    "from_generator": (
        lambda d: tf.data.Dataset.from_generator(_generator, output_signature=d.element_spec),
        "cannot be saved"),
}


def _options(**kwargs):
    options = tf.data.Options()
    for key, value in kwargs.items():
        setattr(options, key, value)
    return options


@pytest.mark.parametrize("case", sorted(UNREPRODUCIBLE))
def test_dataset_whose_order_cannot_be_reproduced_is_refused(tmp_path, no_global_seed, case):
    build, message = UNREPRODUCIBLE[case]
    dataset = build(tf.data.Dataset.from_tensor_slices(XY)).batch(4)
    trainer = make()  # after the dataset: make() sets a global seed
    with pytest.raises(ValueError, match=f"(?s)checkpoint_dir.*Received.*{re.escape(message)}"):
        trainer.fit(dataset, epochs=1, verbose=0, checkpoint_dir=str(tmp_path / case))
    assert not (tmp_path / case / CHECKPOINT_FILE).exists()


def test_seeded_dataset_is_accepted_and_its_distributed_form_is_refused(tmp_path, two_cpu_strategy):
    dataset = tf.data.Dataset.from_tensor_slices(XY).shuffle(8, seed=1).batch(4)
    make().fit(dataset, epochs=1, verbose=0, checkpoint_dir=str(tmp_path / "a"))
    assert load_checkpoint(tmp_path / "a" / CHECKPOINT_FILE)[2]  # the dataset's state is saved
    with pytest.raises(TypeError, match="checkpoint_dir.*Received: x of type Distributed"):
        make().fit(two_cpu_strategy.experimental_distribute_dataset(dataset), epochs=1, verbose=0,
                   checkpoint_dir=str(tmp_path / "b"))
