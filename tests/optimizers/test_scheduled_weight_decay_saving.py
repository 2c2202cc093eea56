"""A scheduled ``weight_decay`` keeps the optimizer's saved layout, so ``load_model`` restores it.

``HyperparameterScheduler("weight_decay", ...)`` (``control.schedule_hyperparameter``) put its
variable into ``optimizer.variables`` on our optimizers (through Keras's attribute tracker,
``weight_decay`` being a property there): the saved optimizer had one variable more than a
fresh one, and ``load_model`` skipped the whole optimizer state (a Keras warning only): the
step counter restarted at 0, the slots at zero, and the resumed run ended up to 0.32 off.
"""

import os

import keras
import numpy as np
import pytest

import keras_trainkit as tk

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 6)).astype("float32")
Y = (X @ RNG.normal(size=(6, 3))).astype("float32")
FIT = dict(batch_size=8, shuffle=False, verbose=0)

OPTIMIZERS = {
    "AdaBelief": lambda: tk.optimizers.AdaBelief(0.01, weight_decay=0.1),
    "RAdam": lambda: tk.optimizers.RAdam(0.01, weight_decay=0.1),
    "Muon": lambda: tk.optimizers.Muon(0.02, weight_decay=0.1),
    "MARS": lambda: tk.optimizers.MARS(0.01, weight_decay=0.1),
    "LARS": lambda: tk.optimizers.LARS(0.5, weight_decay=0.1),
    "Cautious(Adam)": lambda: tk.optimizers.Cautious(keras.optimizers.Adam(0.01), weight_decay=0.1),
}


def compiled(make_optimizer):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh", name="h"),
                              keras.layers.Dense(3, name="o")])
    model.compile(make_optimizer(), "mse")
    return model


def decay_schedule():
    return [tk.callbacks.HyperparameterScheduler("weight_decay", tk.schedules.LinearDecay(0.1, 12, 0.1))]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_run_resumed_from_a_saved_model_equals_the_uninterrupted_run(name, tmp_path):
    uninterrupted = compiled(OPTIMIZERS[name])
    uninterrupted.fit(X, Y, epochs=3, callbacks=decay_schedule(), **FIT)
    saved = compiled(OPTIMIZERS[name])
    saved.fit(X, Y, epochs=3, callbacks=decay_schedule(), **FIT)
    fresh = compiled(OPTIMIZERS[name])
    fresh.optimizer.build(fresh.trainable_variables)
    assert len(saved.optimizer.variables) == len(fresh.optimizer.variables)
    path = os.path.join(tmp_path, "model.keras")
    saved.save(path)
    loaded = keras.saving.load_model(path)
    assert int(loaded.optimizer.iterations) == 12
    uninterrupted.fit(X, Y, epochs=2, **FIT)
    loaded.fit(X, Y, epochs=2, **FIT)
    for resumed, reference in zip(loaded.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(resumed, reference, rtol=1e-6, atol=1e-7)
