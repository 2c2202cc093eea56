"""``ScheduleFree`` inside ``LayerwiseLearningRate`` or ``Cautious`` is refused: each step
sets the weights to ``y = beta x + (1 - beta) z`` from its own state, and the outer wrapper
scaled or masked that as a step (Layerwise(ScheduleFree(SGD(0.1)), 0.5) trained to
[-0.915, 0.198, -0.359] where the scaled-rate reference gives [-0.558, -0.042, 0.136]).
The nesting the refusal points to, ``ScheduleFree(LayerwiseLearningRate(...))``, is the
paper's SGD version at the scaled rate (numpy below)."""

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers import Cautious, LayerwiseLearningRate, ScheduleFree


@pytest.mark.parametrize("make", [lambda inner: LayerwiseLearningRate(inner, {"*": 0.5}),
                                  lambda inner: Cautious(inner)],
                         ids=["LayerwiseLearningRate", "Cautious"])
def test_a_schedule_free_inside_a_wrapper_rewriting_the_step_is_refused(make):
    with pytest.raises(ValueError, match=r"must not be or wrap a ScheduleFree.*Put it outside: "
                                         r"ScheduleFree\(.*Received: optimizer=ScheduleFree\(SGD\)"):
        make(ScheduleFree(keras.optimizers.SGD(0.1)))


def test_schedule_free_outside_layerwise_is_schedule_free_at_the_scaled_rate():
    """Defazio et al. 2024, SGD version, constant rate (c_t = 1/t), rate 0.1 * 0.5."""
    grads = np.random.default_rng(2).normal(size=(100, 3)).astype("float32")
    w = keras.Variable(np.ones(3, "float32"), name="kernel")
    optimizer = ScheduleFree(LayerwiseLearningRate(keras.optimizers.SGD(0.1), {"*": 0.5}), beta_1=0.9)
    x = z = np.ones(3)
    for t, g in enumerate(grads, start=1):
        optimizer.apply([g], [w])
        z = z - 0.05 * g
        x = (1 - 1 / t) * x + z / t
    np.testing.assert_allclose(w.numpy(), 0.9 * x + 0.1 * z, rtol=1e-5, atol=1e-6)
