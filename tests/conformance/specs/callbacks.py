"""Conformance spec for ``keras_trainkit.callbacks``."""

import copy

import numpy as np

from tests.conformance.fit_helpers import dense_model, regression_data
from tests.conformance.spec import FamilySpec, collect_classes


def exercise(callback, tmp_path):
    """Run the callback in ``model.fit`` twice (state reset) and after a deep copy."""
    x, y = regression_data()
    for cb in (callback, callback, copy.deepcopy(callback)):
        model = dense_model()
        model.compile(optimizer="sgd", loss="mse")
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0,
                            validation_data=(x, y), callbacks=[cb])
        assert np.all(np.isfinite(history.history["loss"]))


FAMILY = FamilySpec(invalid={"patience": -1}, exercise=exercise, classes=collect_classes("callbacks"))
