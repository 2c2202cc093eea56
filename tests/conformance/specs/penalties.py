"""Conformance spec for the model-level penalties (``keras_trainkit.regularizers.penalties``).

They are not weight regularizers: the exercise trains a ``PenalizedModel`` that
adds the penalty to the loss in ``fit``, then saves and reloads it as ``.keras``.
"""

import numpy as np

from keras_trainkit.regularizers import PenalizedModel
from tests.conformance.fit_helpers import dense_model, fit_save_load, regression_data
from tests.conformance.spec import FamilySpec, ClassSpec, collect_classes


def exercise(penalty, tmp_path):
    """Train a PenalizedModel with the penalty, save, load; the penalty comes back."""
    model = PenalizedModel(dense_model(), [penalty])
    model.compile(optimizer="sgd", loss="mse")
    loaded = fit_save_load(model, tmp_path)
    assert isinstance(loaded, PenalizedModel)
    assert [type(p) for p in loaded.penalties] == [type(penalty)]
    assert loaded.penalties[0].get_config() == penalty.get_config()
    x, y = regression_data()
    assert np.isfinite(loaded.evaluate(x, y, verbose=0, return_dict=True)["penalty"])


CLASSES = {
    # the exercise's regression model needs a regression loss
    "InputGradientPenalty": ClassSpec(valid={"loss": "mse"}),
    "JacobianPenalty": ClassSpec(),
}
CLASSES.update(collect_classes("penalties"))

FAMILY = FamilySpec(invalid={"factor": -1.0}, exercise=exercise, classes=CLASSES)
