"""Conformance spec for ``keras_trainkit.initializers``."""

from tests.conformance.fit_helpers import dense_model, fit_save_load
from tests.conformance.spec import FamilySpec, collect_classes


def exercise(initializer, tmp_path):
    """Initialize a Dense kernel with it, train, save and load."""
    model = dense_model(kernel_initializer=initializer)
    model.compile(optimizer="sgd", loss="mse")
    loaded = fit_save_load(model, tmp_path)
    restored = loaded.get_layer("hidden").kernel_initializer
    assert type(restored) is type(initializer)


FAMILY = FamilySpec(invalid={"scale": -1.0}, exercise=exercise, classes=collect_classes("initializers"))
