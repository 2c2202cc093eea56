"""GeometricFan statistics, LSUV on MNIST-1D, and weight selection."""

import math

import keras
import numpy as np
import pytest

import keras_trainkit as tk
from keras_trainkit.initializers import GeometricFan, lsuv_initialize, select_weights


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
@pytest.mark.parametrize("shape", [(512, 256), (3, 3, 64, 128), (5, 96, 200)])
def test_geometric_fan_variance_within_5_percent(shape, distribution):
    init = GeometricFan(scale=2.0, distribution=distribution, seed=3)
    values = keras.ops.convert_to_numpy(init(shape))
    receptive = int(np.prod(shape[:-2]))
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    expected = 2.0 / math.sqrt(fan_in * fan_out)  # formula written out here, not from the code
    assert abs(values.var() / expected - 1) < 0.05
    assert abs(values.mean()) < 0.05 * math.sqrt(expected)
    if distribution == "uniform":
        assert np.abs(values).max() <= math.sqrt(3 * expected) + 1e-7


def test_geometric_fan_seeds():
    a = keras.ops.convert_to_numpy(GeometricFan(seed=1)((20, 30)))
    b = keras.ops.convert_to_numpy(GeometricFan(seed=1)((20, 30)))
    np.testing.assert_array_equal(a, b)
    unseeded = GeometricFan()
    c, d = (keras.ops.convert_to_numpy(unseeded((20, 30))) for _ in range(2))
    assert not np.allclose(c, d)


@pytest.mark.parametrize("kwargs,name", [
    ({"scale": -1.0}, "scale"), ({"scale": 0.0}, "scale"),
    ({"distribution": "cauchy"}, "distribution"),
])
def test_geometric_fan_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        GeometricFan(**kwargs)
    with pytest.raises(TypeError, match="Received: seed="):
        GeometricFan(seed=1.5)


def test_lsuv_unit_variance_on_mnist1d():
    (x, _), _ = tk.datasets.load_mnist1d()
    keras.utils.set_random_seed(0)
    model = tk.models.mlp((40,), 10, depth=6, width=64, activation="relu")
    tol = 0.05
    variances = lsuv_initialize(model, x[:512], tol=tol, max_iter=10, seed=0)
    names = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert list(variances) == names
    # Check independently: run the data through sub-models of the initialized network.
    held_out = x[512:1024]
    for name in names:
        layer = model.get_layer(name)
        probe = keras.Model(model.inputs[0], layer.output)
        var_train = np.var(keras.ops.convert_to_numpy(probe(x[:512])))
        assert abs(var_train - 1) <= tol, (name, var_train)
        # on other real data of the same distribution it stays close to 1
        assert abs(np.var(keras.ops.convert_to_numpy(probe(held_out))) - 1) < 0.25


def test_lsuv_fused_activation_uses_pre_activation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(32, activation="tanh"), keras.layers.Dense(3)])
    variances = lsuv_initialize(model, x, tol=0.02, seed=1)
    h = x
    for layer in model.layers:
        pre = h @ keras.ops.convert_to_numpy(layer.kernel) + keras.ops.convert_to_numpy(layer.bias)
        assert abs(pre.var() - 1) < 0.02
        h = keras.ops.convert_to_numpy(layer.activation(pre))
    assert len(variances) == 3
    assert model.layers[0].activation is keras.activations.relu


def test_lsuv_bad_arguments():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x = np.ones((8, 4), "float32")
    with pytest.raises(ValueError, match="Received: tol=-0.1"):
        lsuv_initialize(model, x, tol=-0.1)
    with pytest.raises(ValueError, match="Received: max_iter=0"):
        lsuv_initialize(model, x, max_iter=0)
    with pytest.raises(ValueError, match="x_batch"):
        lsuv_initialize(model, np.full((8, 4), np.nan))


@pytest.mark.parametrize("as_dict", [False, True])
def test_lsuv_on_a_model_with_two_inputs(as_dict):
    """Before: np.asarray(x_batch) made NumPy's 'inhomogeneous shape' error of a list, and
    of a dict a 0-d array ('at least 2 examples')."""
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(256, 4)).astype("float32"), rng.normal(size=(256, 3)).astype("float32")
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    hidden = keras.layers.Concatenate()([keras.layers.Dense(6, activation="relu", name="da")(a),
                                         keras.layers.Dense(6, activation="relu", name="db")(b)])
    model = keras.Model([a, b], keras.layers.Dense(2, name="head")(hidden))
    variances = lsuv_initialize(model, {"a": xa, "b": xb} if as_dict else [xa, xb], tol=0.02, seed=0)
    assert sorted(variances) == ["da", "db", "head"]
    for name in ("da", "db"):  # pre-activations, computed here from the kernels
        layer, x = model.get_layer(name), xa if name == "da" else xb
        pre = x @ keras.ops.convert_to_numpy(layer.kernel) + keras.ops.convert_to_numpy(layer.bias)
        assert abs(pre.var() - 1) < 0.02, name


def _mlp(width, depth=2, bn=False):
    return tk.models.mlp((12,), 5, depth=depth, width=width, batch_norm=bn)


@pytest.mark.parametrize("method", ["uniform", "first", "random"])
def test_select_weights_values_from_large_model_with_consistent_indices(method):
    keras.utils.set_random_seed(1)
    large, small = _mlp(48, depth=3, bn=True), _mlp(20, depth=3, bn=True)
    # make the BatchNorm statistics non-trivial so they are checked too
    for layer in large.layers:
        for w in layer.weights:
            w.assign(np.random.default_rng(7).normal(size=w.shape).astype("float32"))
    selection = select_weights(small, large, method=method, seed=5)
    previous_out = np.arange(12)
    for small_layer in small.layers:
        if not small_layer.weights:
            continue
        large_layer = large.get_layer(small_layer.name)
        index_sets = selection[small_layer.name]
        for ws, wl, idx in zip(small_layer.weights, large_layer.weights, index_sets):
            s, l = keras.ops.convert_to_numpy(ws), keras.ops.convert_to_numpy(wl)
            # every value is the large model's value at the reported indices
            expected = l
            for axis, ix in enumerate(idx):
                expected = np.take(expected, ix, axis=axis)
            np.testing.assert_array_equal(s, expected)
            assert np.isin(s, l).all()
            assert all(len(set(ix)) == len(ix) and ix.max() < dl for ix, dl in zip(idx, l.shape))
        if isinstance(small_layer, keras.layers.Dense):
            kernel_idx = index_sets[0]
            # the inputs kept are exactly the units the previous layer kept
            np.testing.assert_array_equal(kernel_idx[0], previous_out)
            previous_out = kernel_idx[1]
        else:  # BatchNorm: its channels are the Dense layer's kept units
            for idx in index_sets:
                np.testing.assert_array_equal(idx[0], previous_out)


def test_select_weights_consistency_gives_the_subnetwork_function():
    # A linear teacher whose dropped hidden units have zero outgoing weights: the student
    # built from consistent indices computes exactly the teacher's function.
    rng = np.random.default_rng(0)
    large = keras.Sequential([keras.Input((6,)), keras.layers.Dense(12), keras.layers.Dense(3)])
    small = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(3)])
    kept = (np.arange(4) * 12) // 4
    w2 = np.zeros((12, 3), "float32")
    w2[kept] = rng.normal(size=(4, 3))
    large.layers[1].kernel.assign(w2)
    select_weights(small, large)
    x = rng.normal(size=(10, 6)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(small(x)), keras.ops.convert_to_numpy(large(x)),
                               rtol=1e-5, atol=1e-6)


def test_select_weights_mismatched_architectures():
    with pytest.raises(ValueError, match="do not correspond"):
        select_weights(_mlp(8, depth=2), _mlp(16, depth=3))
    with pytest.raises(ValueError, match="do not correspond"):
        select_weights(_mlp(32), _mlp(16))
    with pytest.raises(ValueError, match="Received: method='best'"):
        select_weights(_mlp(8), _mlp(16), method="best")
