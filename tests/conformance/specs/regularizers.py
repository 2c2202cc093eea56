"""Conformance spec for ``keras_trainkit.regularizers``."""

from tests.conformance.fit_helpers import dense_model, fit_save_load
from tests.conformance.spec import FamilySpec, collect_classes


def exercise(regularizer, tmp_path):
    """Regularize a Dense kernel with it, train, save and load."""
    model = dense_model(kernel_regularizer=regularizer)
    model.compile(optimizer="sgd", loss="mse")
    loaded = fit_save_load(model, tmp_path)
    restored = loaded.get_layer("hidden").kernel_regularizer
    assert type(restored) is type(regularizer)


FAMILY = FamilySpec(invalid={"factor": -1.0}, exercise=exercise, classes=collect_classes("regularizers"))
