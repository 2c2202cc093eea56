"""A skip transform's branch that recomputes only some of the gradients.

After a ``SkipTransform`` the rest of the chain and the update run inside a
``tf.cond`` branch. There, a transform that changes only some gradients
(``GradientCentralization``: the kernels', not the biases'), or a 16-bit
variable's gradient cast to float32 beside float32 ones (a ``"bfloat16"`` policy
with a float32 output layer), left a mix of branch and enclosing-graph tensors,
and Keras's cross-replica sum of the gradients raised "All custom_gradient outputs
should be from the same graph" on the first step. No step is skipped here, so each
run must equal the same chain without its skip transform (no ``cond``), on every
path: ``model.fit`` with and without XLA, under ``MirroredStrategy``, and the
``Trainer``.
"""

import contextlib

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers import GradientCentralization, RAdam, SkipNonFinite, TransformedOptimizer
from keras_trainkit.training import Trainer
from tests.conftest import mirrored_two_cpus


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(24, 3)).astype("float32"), rng.normal(size=(24, 2)).astype("float32")


def _model(output_dtype=None):
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                             keras.layers.Dense(2, dtype=output_dtype)])


def _weights(model):
    return [np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(w, "float32"))) for w in model.weights]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def _centralized_sgd(skip):
    transforms = [SkipNonFinite(), GradientCentralization()] if skip else [GradientCentralization()]
    return TransformedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9), transforms)


@pytest.mark.parametrize("path", ["fit", "fit_xla", "fit_mirrored"])
def test_a_transform_changing_some_gradients_after_a_skip_in_model_fit(path):
    x, y = _data()
    runs = []
    for skip in (True, False):
        strategy = mirrored_two_cpus() if path == "fit_mirrored" else None
        with strategy.scope() if strategy else contextlib.nullcontext():
            model = _model()
            model.compile(_centralized_sgd(skip), "mse", jit_compile=path == "fit_xla")
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        runs.append(_weights(model))
    _assert_same(*runs)


def test_a_transform_changing_some_gradients_after_a_skip_in_the_trainer():
    x, y = _data()
    runs = []
    for skip in (True, False):
        transforms = [SkipNonFinite(), GradientCentralization()] if skip else [GradientCentralization()]
        model = _model()
        trainer = Trainer(model, keras.optimizers.SGD(0.1, momentum=0.9), "mse", shuffle=False,
                          gradient_transforms=transforms, on_nan="skip" if skip else "raise")
        trainer.fit(x, y, batch_size=8, epochs=1, verbose=0)
        runs.append(_weights(model))
    _assert_same(*runs)


@pytest.mark.parametrize("policy", ["bfloat16", "float16"])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_16_bit_and_float32_variables_after_a_skip(policy, jit_compile):
    x, y = _data()
    runs = []
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        for skip in (True, False):
            model = _model(output_dtype="float32")
            model.compile(TransformedOptimizer(RAdam(0.01), [SkipNonFinite()] if skip else []), "mse",
                          jit_compile=jit_compile)
            model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
            runs.append(_weights(model))
    finally:
        keras.config.set_dtype_policy(previous)
    assert {str(w.dtype) for w in model.weights} == {policy, "float32"}
    _assert_same(*runs)
