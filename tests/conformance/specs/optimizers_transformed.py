"""Conformance overrides for the optimizer wrappers of keras_trainkit.optimizers.wrapper/transformed."""

import keras

from tests.conformance.spec import ClassSpec

CLASSES = {
    "OptimizerWrapper": ClassSpec(
        valid=lambda: {"optimizer": keras.optimizers.Adam(0.01)},
        invalid={"optimizer": "no_such_optimizer"},
    ),
}
