"""Conformance specs for Lookahead, SAM, LayerwiseLearningRate and Shampoo."""

import keras
import numpy as np

from tests.conformance.fit_helpers import dense_model, fit_save_load
from tests.conformance.spec import ClassSpec


def _sgd():
    return {"optimizer": keras.optimizers.SGD(0.01, momentum=0.9)}


def _sam_exercise(optimizer, tmp_path):
    """SAM is used through SAMModel in fit; the optimizer slots survive save/load."""
    from keras_trainkit.optimizers import SAMModel

    model = SAMModel(dense_model())
    model.compile(optimizer=optimizer, loss="mse")
    loaded = fit_save_load(model, tmp_path)
    assert type(loaded) is SAMModel and type(loaded.optimizer) is type(optimizer)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


CLASSES = {
    "Lookahead": ClassSpec(valid=_sgd, invalid={"sync_period": 0}),
    "SAM": ClassSpec(valid=_sgd, invalid={"rho": 0.0}, exercise=_sam_exercise),
    "LayerwiseLearningRate": ClassSpec(
        # "*kernel": the conformance model's kernels ("hidden/kernel", "out/kernel") and the
        # constructor fuzz's bare "kernel" variable (a pattern matching none is refused at build)
        valid=lambda: {**_sgd(), "multipliers": {"*kernel": 0.5}}, invalid={"default": -1.0}
    ),
    "Shampoo": ClassSpec(valid={"max_block_size": 4, "preconditioning_compute_steps": 2}, invalid={"max_block_size": 0}),
}
