"""SAM and model-level penalties under the Trainer match their model.fit versions."""

import keras
import numpy as np

from keras_trainkit.optimizers import SAM, SAMModel
from keras_trainkit.regularizers import JacobianPenalty, PenalizedModel
from keras_trainkit.training import Trainer


def problem():
    rng = np.random.default_rng(0)
    return rng.normal(size=(48, 4)).astype("float32"), rng.normal(size=(48, 2)).astype("float32")


def net():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                             keras.layers.Dense(2)])


def assert_same(a_model, b_model):
    for a, b in zip(a_model.get_weights(), b_model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def sam_model_fit(x, y):
    """The reference: ``SAMModel`` trained by ``fit`` (SGD 0.1, rho 0.1, 2 epochs of 16)."""
    reference = net()
    wrapped = SAMModel(reference)
    wrapped.compile(optimizer=SAM(keras.optimizers.SGD(0.1), rho=0.1), loss="mse")
    wrapped.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return reference


def test_sam_matches_sam_model_fit():
    x, y = problem()
    reference = sam_model_fit(x, y)
    model = net()
    Trainer(model, SAM(keras.optimizers.SGD(0.1), rho=0.1), "mse", jit_compile=False,
            shuffle=False).fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert_same(reference, model)
    plain = net()
    Trainer(plain, keras.optimizers.SGD(0.1), "mse", jit_compile=False, shuffle=False).fit(
        x, y, batch_size=16, epochs=2, verbose=0)
    assert not np.allclose(plain.get_weights()[0], model.get_weights()[0], atol=1e-5)


class SAMWithoutStateVariables(keras.optimizers.SGD):
    """A user's SAM-like optimizer (``compute_gradients`` and ``rho``) written before our
    ``compute_gradients`` took ``state_variables``: SAM's two passes, by hand."""

    rho = 0.1

    def compute_gradients(self, loss_fn, variables):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, variables)
        norm = tf.linalg.global_norm(grads)
        steps = [self.rho * g / (norm + 1e-12) for g in grads]
        for variable, step in zip(variables, steps):
            variable.assign_add(step)
        with tf.GradientTape() as tape:
            perturbed = loss_fn()
        grads = tape.gradient(perturbed, variables)
        for variable, step in zip(variables, steps):
            variable.assign_sub(step)
        return loss, grads


def test_a_sam_like_optimizer_without_state_variables_is_called_as_before():
    # Before, the Trainer passed `state_variables=` to every SAM-like optimizer: TypeError.
    x, y = problem()
    reference = sam_model_fit(x, y)
    model = net()
    Trainer(model, SAMWithoutStateVariables(0.1), "mse", jit_compile=False, shuffle=False).fit(
        x, y, batch_size=16, epochs=2, verbose=0)
    assert_same(reference, model)


def test_jacobian_penalty_matches_penalized_model_fit():
    x, y = problem()
    reference = net()
    wrapped = PenalizedModel(reference, [JacobianPenalty(0.5, num_projections=2, seed=7)])
    wrapped.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    keras.utils.set_random_seed(7)
    wrapped.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    model = net()
    trainer = Trainer(model, keras.optimizers.SGD(0.1), "mse", jit_compile=False, shuffle=False,
                      penalties=[JacobianPenalty(0.5, num_projections=2, seed=7)])
    keras.utils.set_random_seed(7)
    trainer.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert_same(reference, model)
