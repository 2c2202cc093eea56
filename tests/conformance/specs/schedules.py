"""Conformance spec for ``keras_trainkit.schedules``."""

import keras

from tests.conformance.fit_helpers import dense_model, fit_save_load
from tests.conformance.spec import FamilySpec, collect_classes


def exercise(schedule, tmp_path):
    """Use the schedule as an optimizer's learning rate in ``model.fit``; save and load."""
    model = dense_model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    loaded = fit_save_load(model, tmp_path)
    restored = loaded.optimizer._learning_rate
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()


FAMILY = FamilySpec(invalid={"decay_steps": -1}, exercise=exercise, classes=collect_classes("schedules"))
