"""Conformance overrides for the optimizer wrappers of keras_trainkit.optimizers.wrapper/transformed."""

import keras

from keras_trainkit.optimizers.transforms import AutoClip, ClipByGlobalNorm, SkipNonFinite

from tests.conformance.spec import ClassSpec

CLASSES = {
    "OptimizerWrapper": ClassSpec(
        valid=lambda: {"optimizer": keras.optimizers.Adam(0.01)},
        invalid={"optimizer": "no_such_optimizer"},
    ),
    "TransformedOptimizer": ClassSpec(
        valid=lambda: {
            "optimizer": keras.optimizers.Adam(0.01),
            "transforms": [SkipNonFinite(), AutoClip(10.0, history_size=8), ClipByGlobalNorm(1.0)],
        },
        invalid={"transforms": ["no_such_transform"]},
    ),
}
