"""A second ``Trainer.fit``: callbacks that swap ``model.optimizer`` take effect, no needless retrace."""

import logging

import keras
import numpy as np

from keras_trainkit.callbacks import GradientClipping
from keras_trainkit.training import Trainer


def make(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh"),
                              keras.layers.Dense(1)])
    trainer = Trainer(model, keras.optimizers.SGD(0.1), "mse", jit_compile=False, shuffle=False)
    return model, trainer


def data():
    rng = np.random.default_rng(0)
    # Large targets: the gradient norm is far above the clipping bound.
    return rng.normal(size=(32, 4)).astype("float32"), 50.0 * rng.normal(size=(32, 1)).astype("float32")


def test_gradient_clipping_takes_effect_in_a_second_fit(caplog):
    x, y = data()
    clipped_model, trainer = make()
    plain_model, plain = make()
    trainer.fit(x, y, batch_size=8, epochs=1, verbose=0)
    plain.fit(x, y, batch_size=8, epochs=1, verbose=0)
    np.testing.assert_allclose(clipped_model.get_weights()[0], plain_model.get_weights()[0], rtol=1e-6)

    with caplog.at_level(logging.WARNING):
        history = trainer.fit(x, y, batch_size=8, epochs=1, verbose=0,
                              callbacks=[GradientClipping("global_norm", max_norm=0.5)])
    plain.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert "did not use the wrapped optimizer" not in caplog.text
    assert history.history["grad_norm"][0] > 0.5
    assert history.history["clip_fraction"][0] == 1.0
    # Each clipped update moves the weights by lr * 0.5 at most in global norm.
    assert not np.allclose(clipped_model.get_weights()[0], plain_model.get_weights()[0], atol=1e-3)
    # After the fit the original optimizer is back, and a third fit uses it again.
    assert isinstance(clipped_model.optimizer, keras.optimizers.SGD)
    before = [w.copy() for w in clipped_model.get_weights()]
    trainer.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert not np.allclose(before[0], clipped_model.get_weights()[0])


def test_clipped_update_size_is_bounded_in_a_second_fit():
    x, y = data()
    model, trainer = make()
    trainer.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    trainer.fit(x, y, batch_size=32, epochs=1, verbose=0,
                callbacks=[GradientClipping("global_norm", max_norm=0.5)])
    step = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(model.get_weights(), before)))
    assert step <= 0.1 * 0.5 + 1e-6  # one SGD step of a gradient clipped to norm 0.5


def test_plain_second_fit_does_not_retrace():
    x, y = data()
    _, trainer = make()
    trainer.fit(x, y, batch_size=8, epochs=1, verbose=0)
    function = trainer._functions.train_function
    traces = function.experimental_get_tracing_count()
    trainer.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert trainer._functions.train_function is function
    assert function.experimental_get_tracing_count() == traces
