"""Issue 18, section 4: constructor arguments that passed validation and failed later.

Each case crashed with another exception, hung, or was accepted and failed on
first use; each is now a ``ValueError``/``TypeError`` at construction in the
message shape of ``keras_trainkit.utils.validation``.
"""

import keras
import numpy as np
import pytest

from keras_trainkit import callbacks, initializers, optimizers, regularizers, schedules
from keras_trainkit.regularizers import penalties


def _sgd():
    return keras.optimizers.SGD(0.1)


CASES = [
    # wrappers given a dict without `class_name`: KeyError: 'class_name'
    (lambda: optimizers.Lookahead(optimizer={}), ValueError,
     r"config dict with a string `class_name`"),
    (lambda: optimizers.SAM({}), ValueError, r"Received: optimizer=\{\}"),
    (lambda: optimizers.LayerwiseLearningRate({}), ValueError, r"Received: optimizer=\{\}"),
    (lambda: optimizers.TransformedOptimizer({}), ValueError, r"Received: optimizer=\{\}"),
    (lambda: optimizers.OptimizerWrapper({"class_name": 1}), ValueError, r"Received: optimizer="),
    # beyond float32 / int64: inf tensors and OverflowError later
    (lambda: schedules.LinearDecay(1e300, 10), ValueError,
     r"`initial_learning_rate` must be representable as a float32"),
    (lambda: initializers.GeometricFan(scale=1e300), ValueError,
     r"`scale` must be representable as a float32"),
    (lambda: callbacks.TrainingMonitor(spike_window=10**30), ValueError,
     r"`spike_window` must fit in a 64-bit integer"),
    (lambda: initializers.GeometricFan(seed=2**40), ValueError, r"`seed` must be <= 4294967295"),
    (lambda: optimizers.RAdam(beta_2=1 - 1e-12), ValueError, r"`beta_2` must be < 1.0 in float32"),
    (lambda: optimizers.OptimizerWrapper(_sgd(), loss_scale_factor=1e-45), ValueError,
     r"`loss_scale_factor`"),
    # loops that never ended
    (lambda: regularizers.SpectralNorm(power_iterations=10**30), ValueError, r"`power_iterations`"),
    (lambda: regularizers.SRIP(power_iterations=10**6), ValueError, r"`power_iterations` must be <= 1000"),
    (lambda: penalties.JacobianPenalty(num_projections=10**6), ValueError,
     r"`num_projections` must be <= 1000"),
    # floats accepted as integers
    (lambda: schedules.StepDecay(0.1, 1e300), TypeError,
     r"`step_size` must be an integer, not float"),
    (lambda: optimizers.RAdam(gradient_accumulation_steps=2.0), TypeError,
     r"`gradient_accumulation_steps` must be an integer"),
    # data that failed only after all of training
    (lambda: callbacks.SWA(bn_data="abc"), ValueError,
     r"`bn_data` must be numeric input arrays.*Received: bn_data='abc'"),
    (lambda: callbacks.SWA(bn_data=(["a", "b"], [1, 2])), ValueError, r"`bn_data`"),
]


@pytest.mark.parametrize("build, error, match", CASES, ids=range(len(CASES)))
def test_refused_at_construction(build, error, match):
    with pytest.raises(error, match=match) as info:
        build()
    assert "Received:" in str(info.value)


def test_valid_neighbours_still_accepted():
    optimizers.Lookahead(optimizer={"class_name": "SGD", "config": {"learning_rate": 0.1}})
    schedules.LinearDecay(3.0e38, 10)
    regularizers.SpectralNorm(power_iterations=1000)
    callbacks.SWA(bn_data=np.ones((4, 3), "float32"))
    callbacks.SWA(bn_data=(np.ones((4, 3), "float32"), np.zeros(4)))
    initializers.GeometricFan(seed=2**32 - 1)
