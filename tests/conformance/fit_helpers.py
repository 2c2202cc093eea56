"""Small models the family specs use to exercise an object in ``model.fit``."""

from __future__ import annotations

import keras
import numpy as np


def regression_data(n: int = 32, features: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = (x @ rng.normal(size=(features, 1))).astype("float32")
    return x, y


def dense_model(features: int = 4, **dense_kwargs) -> keras.Model:
    inputs = keras.Input((features,))
    hidden = keras.layers.Dense(8, activation="tanh", name="hidden", **dense_kwargs)(inputs)
    outputs = keras.layers.Dense(1, name="out")(hidden)
    return keras.Model(inputs, outputs)


def fit_save_load(model: keras.Model, tmp_path, epochs: int = 2, **fit_kwargs) -> keras.Model:
    """Fit briefly, save as ``.keras``, load, and check predictions and weights agree."""
    x, y = regression_data()
    history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, **fit_kwargs)
    assert np.all(np.isfinite(history.history["loss"])), history.history
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    return loaded
