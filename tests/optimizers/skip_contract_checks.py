"""The skip contract's checks, shared by ``test_skip_contract.py`` (TensorFlow's paths) and
``test_skip_contract_backends.py`` (``model.fit`` on the backend this process runs);
``BatchRecorder`` also by ``test_transformed.py``.

A chain ``[<skip>, GradientNoise, AutoClip]`` gets one ordinary step, then one to skip:
on the skipped step the weights, the optimizer's slots and step counter and the later
transforms' state stay unchanged.
"""

import keras
import numpy as np

from keras_trainkit.optimizers import control


class BatchRecorder(keras.callbacks.Callback):
    """Weights and the leaf optimizer's variables (slots, step counter) after every batch."""

    def __init__(self):
        super().__init__()
        self.weights, self.slots = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([np.array(w, copy=True) for w in self.model.get_weights()])
        leaf = control.leaf_optimizers(self.model.optimizer)[0]
        self.slots.append([np.array(keras.ops.convert_to_numpy(v), copy=True) for v in leaf.variables])


def as_int(variable):
    return int(keras.ops.convert_to_numpy(variable))


def assert_skip_contract(chain, recorder, optimizer):
    """After one ordinary step and one skipped step, the skipped one changed nothing."""
    skip, noise, clip = chain
    assert as_int(noise.step) == 1, "GradientNoise ran on the skipped step"
    assert as_int(clip.count) == 1, "AutoClip's window took the skipped step's norm"
    assert as_int(optimizer.iterations) == 1
    assert len(recorder.weights) == 2
    for before, after in zip(recorder.weights[0], recorder.weights[1]):
        assert np.all(np.isfinite(after))
        np.testing.assert_array_equal(before, after)
    for before, after in zip(recorder.slots[0], recorder.slots[1]):
        np.testing.assert_array_equal(before, after)
