"""Conformance spec for ``keras_trainkit.optimizers.transforms`` (gradient transforms)."""

import keras
import numpy as np

from tests.conformance.fit_helpers import dense_model, fit_save_load
from tests.conformance.spec import FamilySpec, collect_classes


def exercise(transform, tmp_path):
    """Train with ``TransformedOptimizer(SGD, [transform])`` under XLA, save, load, compare state.

    XLA on TensorFlow and JAX. On PyTorch ``jit_compile=True`` means
    ``torch.compile``, which Keras does not use by default there ("auto" is
    eager) and this library does not document; its cold compilation cost the
    CI's PyTorch lane about 600 s for four transforms, so there the step runs
    as Keras runs it by default.
    """
    from keras_trainkit.optimizers import TransformedOptimizer

    model = dense_model()
    optimizer = TransformedOptimizer(keras.optimizers.SGD(0.01, momentum=0.9), [transform])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=keras.backend.backend() != "torch")
    loaded = fit_save_load(model, tmp_path)
    assert type(loaded.optimizer) is TransformedOptimizer
    [restored] = loaded.optimizer.transforms
    assert type(restored) is type(transform)
    assert restored.get_config() == transform.get_config()
    assert len(restored.variables) == len(transform.variables)
    for a, b in zip(transform.variables, restored.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    saved = [np.asarray(v) for v in model.optimizer.variables]
    again = [np.asarray(v) for v in loaded.optimizer.variables]
    assert len(saved) == len(again)
    for a, b in zip(saved, again):
        np.testing.assert_array_equal(a, b)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) > 0


FAMILY = FamilySpec(invalid={"name": ""}, exercise=exercise, classes=collect_classes("transforms"))
