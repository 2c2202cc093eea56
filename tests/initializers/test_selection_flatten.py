"""``select_weights`` through a ``Flatten``: the ``Dense`` layer after it (and a normalization
between them) reads the channels the convolution kept, at every position, for every method."""

import keras
import numpy as np
import pytest

from keras_trainkit.initializers import select_weights

X = np.random.default_rng(0).normal(size=(5, 6, 2)).astype("float32")


def _cnn(channels, length=6, normalize=False, functional=False):
    layers = [keras.layers.Conv1D(channels, 3, padding="same", activation="relu"),
              keras.layers.Flatten()]
    if normalize:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.Dropout(0.1), keras.layers.Dense(3)]
    if not functional:
        return keras.Sequential([keras.Input((length, 2)), *layers])
    inputs = keras.Input((length, 2))
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def _rows(positions, channels, large_channels):
    """Flat feature indices of ``channels`` at ``positions`` (channels last, C order)."""
    return (np.asarray(positions)[:, None] * large_channels + np.asarray(channels)[None, :]).ravel()


@pytest.mark.parametrize("functional", [False, True])
@pytest.mark.parametrize("method", ["uniform", "first", "random"])
def test_the_large_model_restricted_to_the_kept_channels_computes_the_small_one(method, functional):
    large, small = _cnn(8, functional=functional), _cnn(4, functional=functional)
    conv = next(layer for layer in small.layers if isinstance(layer, keras.layers.Conv1D))
    large_conv = next(layer for layer in large.layers if isinstance(layer, keras.layers.Conv1D))
    selection = select_weights(small, large, method=method, seed=3)
    kept = selection[conv.name][0][-1]
    # Zero the convolution's other channels: the large model then computes exactly the
    # sub-network the selection took, which must be the small model (before: 0.71 and
    # 1.00 apart for "first" and "random", the Dense rows of other channels).
    kernel, bias = large_conv.get_weights()
    dropped = np.setdiff1d(np.arange(8), kept)
    kernel[..., dropped], bias[dropped] = 0.0, 0.0
    large_conv.set_weights([kernel, bias])
    np.testing.assert_allclose(small.predict(X, verbose=0), large.predict(X, verbose=0),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["uniform", "first", "random"])
def test_a_normalization_after_the_flatten_keeps_the_same_features(method):
    large, small = _cnn(8, normalize=True), _cnn(4, normalize=True)
    for layer in large.layers:  # distinct statistics, so a wrong row shows
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([np.arange(48, dtype="float32") + k for k in range(4)])
    selection = select_weights(small, large, method=method, seed=1)
    kept = selection[small.layers[0].name][0][-1]
    rows = _rows(np.arange(6), kept, 8)
    norm, dense = small.layers[2], small.layers[4]
    assert isinstance(norm, keras.layers.BatchNormalization)
    for k, vector in enumerate(norm.get_weights()):
        np.testing.assert_array_equal(vector, rows + k)
    np.testing.assert_array_equal(dense.get_weights()[0], large.layers[4].get_weights()[0][rows])


def test_a_shorter_map_takes_evenly_spaced_positions_with_the_kept_channels():
    """Lengths 6 -> 3 and channels 8 -> 4: positions (0, 2, 4) x channels (0, 2, 4, 6).
    An index set of the flattened size alone (48 -> 12: 0, 4, 8, ...) read channels 0
    and 4 at every position."""
    large, small = _cnn(8, length=6), _cnn(4, length=3)
    select_weights(small, large)
    expected = large.layers[3].get_weights()[0][_rows([0, 2, 4], [0, 2, 4, 6], 8)]
    np.testing.assert_array_equal(small.layers[3].get_weights()[0], expected)


def test_a_longer_small_map_is_refused():
    large, small = _cnn(8, length=6), _cnn(4, length=8)
    with pytest.raises(ValueError, match=r"flattens \(8, 4\) vs .* flattens \(6, 8\)"):
        select_weights(small, large)
