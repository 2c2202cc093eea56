"""Conformance spec for SwapEvaluationWeights (issue 19): exercised with a ScheduleFree optimizer."""

import copy

import keras
import numpy as np

from tests.conformance.fit_helpers import dense_model, regression_data
from tests.conformance.spec import ClassSpec


def _exercise(callback, tmp_path):
    """Twice in ``model.fit`` (state reset) and after a deep copy, validating at x."""
    from keras_trainkit.optimizers import ScheduleFree

    x, y = regression_data()
    for cb in (callback, callback, copy.deepcopy(callback)):
        model = dense_model()
        model.compile(optimizer=ScheduleFree(keras.optimizers.SGD(0.01)), loss="mse")
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y), callbacks=[cb])
        assert np.all(np.isfinite(history.history["val_loss"]))
        assert model.optimizer.holds_evaluation_weights


CLASSES = {
    "SwapEvaluationWeights": ClassSpec(invalid={"bn_steps": 0}, exercise=_exercise),
}
