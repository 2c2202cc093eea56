"""``select_weights`` on recurrent layers: the gates an LSTM (4) or GRU (3) keeps side by
side on its weights' last axis are selected gate by gate. Checked by what the selection
must compute: where the large layer's units outside the kept set feed nothing back into
the kept ones (their rows of the recurrent kernel are zero), the small layer's output
equals the large layer's kept units' output. Before, ``"first"`` and ``"random"`` took
the whole axis's first / random columns: a small LSTM's forget gate came from the large
one's input gate (the outputs differed by up to 0.56-1.14)."""

import keras
import numpy as np
import pytest

from keras_trainkit.initializers import select_weights

LARGE, SMALL, STEPS, FEATURES = 6, 3, 5, 4


def _model(layer_class, units):
    return keras.Sequential([keras.Input((STEPS, FEATURES)),
                             layer_class(units, return_sequences=True, name="rnn"),
                             keras.layers.Dense(2, name="head")])


def _kept_units(method, selection, small):
    """The large layer's units kept: the Dense head's input features (selected as any
    (LARGE, SMALL) axis, independently of the recurrent layer)."""
    expected = {"first": np.arange(SMALL), "uniform": (np.arange(SMALL) * LARGE) // SMALL}
    kept = selection[small.get_layer("head").name][0][0]
    if method in expected:
        np.testing.assert_array_equal(kept, expected[method])
    return kept


@pytest.mark.parametrize("layer_class", [keras.layers.LSTM, keras.layers.GRU])
@pytest.mark.parametrize("method", ["first", "random", "uniform"])
def test_the_small_recurrent_layer_computes_the_kept_units(layer_class, method):
    keras.utils.set_random_seed(3)
    large, small = _model(layer_class, LARGE), _model(layer_class, SMALL)
    selection = select_weights(small, large, method=method, seed=5)
    kept = _kept_units(method, selection, small)
    # cut the other units' recurrent influence in the large layer, then select again
    recurrent = large.get_layer("rnn").cell.recurrent_kernel
    rows = keras.ops.convert_to_numpy(recurrent).copy()
    rows[np.setdiff1d(np.arange(LARGE), kept)] = 0.0
    recurrent.assign(rows)
    select_weights(small, large, method=method, seed=5)
    x = np.random.default_rng(1).normal(size=(8, STEPS, FEATURES)).astype("float32")
    large_units = keras.Model(large.inputs, large.get_layer("rnn").output)(x)
    small_units = keras.Model(small.inputs, small.get_layer("rnn").output)(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(small_units),
                               keras.ops.convert_to_numpy(large_units)[..., kept], atol=1e-5)


def _bidirectional(units):
    return keras.Sequential([keras.Input((STEPS, FEATURES)),
                             keras.layers.Bidirectional(keras.layers.LSTM(units), name="rnn"),
                             keras.layers.Dense(2, name="head")])


@pytest.mark.parametrize("method", ["first", "random", "uniform"])
def test_a_bidirectional_layers_two_directions_are_read_as_two_parts(method):
    """The head reads each direction's kept units (at offsets 0 and LARGE); before, the
    joined axis of 2 * LARGE was selected as one ("first": the forward direction only)."""
    keras.utils.set_random_seed(5)
    large, small = _bidirectional(LARGE), _bidirectional(SMALL)
    selection = select_weights(small, large, method=method, seed=5)
    kept = selection["rnn"][1][0]  # the forward recurrent kernel's rows: the kept units
    expected = np.concatenate([kept, LARGE + kept])
    np.testing.assert_array_equal(selection["head"][0][0], expected)
    rnn = large.get_layer("rnn")
    for direction in (rnn.forward_layer, rnn.backward_layer):
        recurrent = direction.cell.recurrent_kernel
        rows = keras.ops.convert_to_numpy(recurrent).copy()
        rows[np.setdiff1d(np.arange(LARGE), kept)] = 0.0
        recurrent.assign(rows)
    head = large.get_layer("head").kernel
    rows = keras.ops.convert_to_numpy(head).copy()
    rows[np.setdiff1d(np.arange(2 * LARGE), expected)] = 0.0
    head.assign(rows)
    select_weights(small, large, method=method, seed=5)
    x = np.random.default_rng(1).normal(size=(8, STEPS, FEATURES)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(small(x)), keras.ops.convert_to_numpy(large(x)),
                               atol=1e-5)
