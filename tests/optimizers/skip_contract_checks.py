"""A callback that records, after every batch, the weights and the leaf optimizer's variables.

Shared by the skip-contract tests (``test_skip_contract.py`` on TensorFlow's paths,
``test_skip_contract_backends.py`` on the backend this process runs).
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
