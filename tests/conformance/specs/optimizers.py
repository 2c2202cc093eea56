"""Conformance spec for ``keras_trainkit.optimizers``."""

import keras
import numpy as np

from tests.conformance.fit_helpers import dense_model, fit_save_load
from tests.conformance.spec import FamilySpec, collect_classes


def exercise(optimizer, tmp_path):
    """Train with the optimizer, save, load, and check the slots were restored."""
    model = dense_model()
    model.compile(optimizer=optimizer, loss="mse")
    loaded = fit_save_load(model, tmp_path)
    assert type(loaded.optimizer) is type(optimizer)
    saved = [np.asarray(v) for v in model.optimizer.variables]
    restored = [np.asarray(v) for v in loaded.optimizer.variables]
    assert len(saved) == len(restored)
    for a, b in zip(saved, restored):
        np.testing.assert_array_equal(a, b)
    assert isinstance(loaded.optimizer, keras.optimizers.Optimizer)


FAMILY = FamilySpec(invalid={"learning_rate": -1.0}, exercise=exercise, classes=collect_classes("optimizers"))
