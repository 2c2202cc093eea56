"""``select_weights`` through a ``Concatenate``: the layer reading the joined features
selects each part on its own, at its offset, so it reads the units each branch kept.
Checked by what the selection must compute: where the large model's reading layer
ignores the features outside the kept ones (their kernel rows are zero), its output
equals the small model's. Before, the joined axis was selected as one axis of the total
size: with ``"first"`` the head of an (8, 6)-unit concatenation read features 0-5, not
0-3 and 8-9, and ``"uniform"`` differed too where the parts shrink by different ratios."""

import keras
import numpy as np
import pytest

from keras_trainkit.initializers import select_weights

PARTS = {"large": (8, 6), "small": (4, 2)}  # the second part shrinks by 3, the first by 2


def _dense_model(sizes):
    inputs = keras.Input((5,))
    parts = [keras.layers.Dense(n, name=f"branch_{i}")(inputs) for i, n in enumerate(sizes)]
    joined = keras.layers.Dropout(0.1, name="dropout")(keras.layers.Concatenate(name="join")(parts))
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(joined))


def _conv_model(sizes):
    inputs = keras.Input((7, 2))
    parts = [keras.layers.Conv1D(n, 3, padding="same", name=f"branch_{i}")(inputs)
             for i, n in enumerate(sizes)]
    joined = keras.layers.Concatenate(name="join")(parts)
    return keras.Model(inputs, keras.layers.Conv1D(3, 3, padding="same", name="head")(joined))


@pytest.mark.parametrize("build, shape", [(_dense_model, (6, 5)), (_conv_model, (6, 7, 2))],
                         ids=["dense", "conv1d"])
@pytest.mark.parametrize("method", ["first", "random", "uniform"])
def test_the_reading_layer_reads_the_units_each_part_kept(build, shape, method):
    keras.utils.set_random_seed(4)
    large, small = build(PARTS["large"]), build(PARTS["small"])
    selection = select_weights(small, large, method=method, seed=7)
    kept = [selection[f"branch_{i}"][0][-1] for i in range(2)]  # each branch's output units
    expected = np.concatenate([kept[0], PARTS["large"][0] + kept[1]])
    np.testing.assert_array_equal(selection["head"][0][-2], expected)
    # the large head ignores the features nobody kept: then it computes what the small one does
    kernel = large.get_layer("head").kernel
    value = keras.ops.convert_to_numpy(kernel).copy()
    value[..., np.setdiff1d(np.arange(sum(PARTS["large"])), expected), :] = 0.0
    kernel.assign(value)
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(small(x)),
                               keras.ops.convert_to_numpy(large(x)), atol=1e-5)


def test_parts_that_do_not_correspond_are_refused():
    inputs = keras.Input((5,))
    parts = [keras.layers.Dense(n, name=f"branch_{i}")(inputs) for i, n in enumerate(PARTS["small"])]
    three_parts = keras.layers.Concatenate()([parts[0], parts[1], parts[0]])  # (4, 2, 4)
    small = keras.Model(inputs, keras.layers.Dense(3, name="head")(three_parts))
    with pytest.raises(ValueError, match=r"head concatenates parts of sizes \(4, 2, 4\) vs "
                                         r"head concatenates parts of sizes \(8, 6\)"):
        select_weights(small, _dense_model(PARTS["large"]))
