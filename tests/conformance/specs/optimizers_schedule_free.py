"""Conformance spec for ScheduleFree (issue 19)."""

import keras

from tests.conformance.spec import ClassSpec


def _sgd():
    return {"optimizer": keras.optimizers.SGD(0.01)}


CLASSES = {
    "ScheduleFree": ClassSpec(valid=_sgd, invalid={"beta_1": 0.0}),
}
