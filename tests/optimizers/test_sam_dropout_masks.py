"""SAM's two passes and dropout: on every backend, in ``SAMModel`` and the Trainer, both
passes of a step draw the same dropout masks (the second pass reads the random-seed
states as the first did, as the authors' JAX code uses one dropout key per step) and the
next step draws new ones. Before, on TensorFlow and PyTorch the second pass's masks were
the next step's first-pass masks (the second pass read the seed state the first had
advanced, then discarded its own advance), while JAX behaved as now."""

import json

import pytest

from tests._other_backend import run_under_backend

_SCRIPT = """
import json, sys
import numpy as np, keras
from keras_trainkit.optimizers import SAM, SAMModel

masks = []

class RecordDropout(keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.generator = keras.random.SeedGenerator(1)

    def call(self, x, training=False):
        if not training:
            return x
        y = keras.random.dropout(x, 0.5, seed=self.generator)
        masks.append((keras.ops.convert_to_numpy(y) != 0).astype(int).ravel().tolist())
        return y

def train(runner):
    masks.clear()
    model = keras.Sequential([keras.Input((16,)), RecordDropout(), keras.layers.Dense(1)])
    x, y = np.ones((4, 16), "float32"), np.zeros((4, 1), "float32")
    if runner == "trainer":
        from keras_trainkit.training import Trainer
        Trainer(model, SAM(keras.optimizers.SGD(0.01)), "mse", run_eagerly=True).fit(
            x, y, batch_size=4, epochs=4, verbose=0)
    else:
        model = SAMModel(model)
        model.compile(SAM(keras.optimizers.SGD(0.01)), "mse", run_eagerly=True)
        model.fit(x, y, batch_size=4, epochs=4, verbose=0)
    return list(masks)

print(json.dumps({runner: train(runner) for runner in sys.argv[1:]}))
"""


def _check(masks):
    assert len(masks) == 8  # 4 steps of two passes
    steps = [masks[i:i + 2] for i in range(0, 8, 2)]
    for first, second in steps:
        assert first == second  # the same masks in both passes of a step
    firsts = [first for first, _ in steps]
    assert all(a != b for a, b in zip(firsts, firsts[1:]))  # new masks each step (64 draws)


def _masks(backend, runners, tmp_path):
    script = tmp_path / "masks.py"
    script.write_text(_SCRIPT)
    completed = run_under_backend(backend, [str(script), *runners], timeout=180)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_both_passes_share_the_steps_masks_on_tensorflow(tmp_path):
    masks = _masks("tensorflow", ["sam_model", "trainer"], tmp_path)
    _check(masks["sam_model"])
    _check(masks["trainer"])


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_both_passes_share_the_steps_masks_on_other_backends(backend, tmp_path):
    _check(_masks(backend, ["sam_model"], tmp_path)["sam_model"])
