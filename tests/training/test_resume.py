"""Crash-safe resume: SIGKILL mid-epoch, rerun, same final weights; a cut-short checkpoint is never loaded."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_trainkit.training import Trainer, _checkpoint

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests/training/_resume_script.py"
STEPS = 3 * 8  # 3 epochs of 64 examples in batches of 8


def run(directory, out, mode="none"):
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(directory), str(out), mode],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def steps_run(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return int(result.stdout.strip().splitlines()[-1].split()[1])


def arrays(path):
    with np.load(path) as archive:
        return [archive[name] for name in archive.files]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    assert steps_run(run(folder / "ckpt", folder / "out.npz")) == STEPS
    return arrays(folder / "out.npz")


def check_same(reference, path):
    resumed = arrays(path)
    assert len(resumed) == len(reference)
    for a, b in zip(reference, resumed):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


def test_killed_while_writing_a_checkpoint_resumes_from_the_last_complete_one(tmp_path, reference):
    # Checkpoints: (0, 3), (0, 6), (1, 0), (1, 3); the fifth, (1, 6), dies half written.
    killed = run(tmp_path / "ckpt", tmp_path / "out.npz", "mid_write:5")
    assert killed.returncode == -signal.SIGKILL
    manifest = json.loads((tmp_path / "ckpt" / _checkpoint.MANIFEST).read_text())
    assert (manifest["epoch"], manifest["step"]) == (1, 3)
    leftovers = [f for f in os.listdir(tmp_path / "ckpt") if ".tmp-" in f]
    assert leftovers and leftovers[0].startswith("ckpt-000001-000000006")
    # The rerun runs only the 5 + 8 remaining steps and ends with the same weights.
    assert steps_run(run(tmp_path / "ckpt", tmp_path / "out.npz")) == 5 + 8
    check_same(reference, tmp_path / "out.npz")
    assert not [f for f in os.listdir(tmp_path / "ckpt") if ".tmp-" in f]


def test_killed_between_checkpoints_resumes_mid_epoch(tmp_path, reference):
    killed = run(tmp_path / "ckpt", tmp_path / "out.npz", "at_step:13")  # epoch 1, step 5
    assert killed.returncode == -signal.SIGKILL
    assert steps_run(run(tmp_path / "ckpt", tmp_path / "out.npz")) == STEPS - 11
    check_same(reference, tmp_path / "out.npz")


def make():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    return Trainer(model, keras.optimizers.SGD(0.1), "mse", jit_compile=False, seed=0)


def test_incomplete_checkpoint_named_by_manifest_is_refused(tmp_path):
    x, y = np.zeros((8, 3), "float32"), np.zeros((8, 1), "float32")
    make().fit(x, y, batch_size=4, epochs=1, verbose=0, checkpoint_dir=str(tmp_path))
    manifest = json.loads((tmp_path / _checkpoint.MANIFEST).read_text())
    path = tmp_path / manifest["checkpoint"]
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="incomplete"):
        make().fit(x, y, batch_size=4, epochs=2, verbose=0, checkpoint_dir=str(tmp_path))


def test_checkpoint_argument_checks(tmp_path):
    x, y = np.zeros((8, 3), "float32"), np.zeros((8, 1), "float32")
    with pytest.raises(ValueError, match="Received: checkpoint_every_n_steps=0"):
        make().fit(x, y, verbose=0, checkpoint_dir=str(tmp_path), checkpoint_every_n_steps=0)
    with pytest.raises(ValueError, match="needs a `checkpoint_dir`"):
        make().fit(x, y, verbose=0, checkpoint_every_n_steps=2)
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        make().fit(dataset, verbose=0, checkpoint_dir=str(tmp_path))
