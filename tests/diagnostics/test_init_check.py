"""check_initialization: flags bad starts with their reason, passes a good one."""

import json

import keras
import numpy as np
import pytest

import keras_trainkit as tk
from keras_trainkit.diagnostics import InitCheckResult, check_initialization


@pytest.fixture(scope="module")
def batch():
    (x, y), _ = tk.datasets.load_mnist1d()
    return x[:256], y[:256]


def test_he_relu_mlp_passes(batch):
    x, y = batch
    keras.utils.set_random_seed(0)
    model = tk.models.mlp((40,), 10, depth=10, width=128, activation="relu", kernel_initializer="he_normal")
    result = check_initialization(model, x, y)
    assert isinstance(result, InitCheckResult)
    assert result.passed, str(result)
    dense = [s for s in result.layers if s.has_kernel]
    assert len(dense) == 11
    assert all(s.kernel_gradient_std > 0 for s in dense)
    relu = [s for s in result.layers if s.dead_fraction is not None]
    assert len(relu) == 10 and all(s.dead_fraction < 0.5 for s in relu)
    # statistics agree with a direct computation
    probe = keras.Model(model.inputs[0], model.get_layer("dense_3").output)
    out = keras.ops.convert_to_numpy(probe(x))
    stats = next(s for s in result.layers if s.name == "dense_3")
    assert stats.activation_std == pytest.approx(out.std(), rel=1e-5)
    assert stats.activation_mean == pytest.approx(out.mean(), rel=1e-4, abs=1e-6)
    table = str(result)
    assert "dense_3" in table and "no warnings" in table
    json.dumps(result.to_dict())


def test_all_zero_dense_kernel_is_flagged(batch):
    x, y = batch
    model = tk.models.mlp((40,), 10, depth=3, width=32, kernel_initializer="he_normal")
    model.get_layer("dense_1").kernel.assign(np.zeros((32, 32), "float32"))
    result = check_initialization(model, x, y)
    identical = [w for w in result.warnings if w.kind == "identical_units"]
    assert [w.layer for w in identical] == ["dense_1"]
    assert "all zero" in identical[0].reason and "symmetry" in identical[0].reason
    assert "identical_units" in result.format_table()


def test_constant_kernel_is_flagged():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, kernel_initializer=keras.initializers.Constant(0.3)),
                              keras.layers.Dense(2)])
    x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
    result = check_initialization(model, x)
    assert any(w.kind == "identical_units" and "constant" in w.reason for w in result.warnings)


def test_deep_tanh_with_tiny_weights_vanishes(batch, tmp_path):
    x, y = batch
    keras.utils.set_random_seed(0)
    model = tk.models.mlp((40,), 10, depth=20, width=64, activation="tanh",
                          kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))
    result = check_initialization(model, x, y, plot_path=tmp_path / "init.png")
    assert {"vanishing_activations", "vanishing_gradients"} <= result.kinds()
    assert not result.passed
    assert (tmp_path / "init.png").stat().st_size > 1000
    # also without labels (surrogate loss)
    assert "vanishing_gradients" in check_initialization(model, x).kinds()


def test_exploding_and_dead_relu():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 32)).astype("float32")
    big = tk.models.mlp((32,), 4, depth=6, width=32, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))
    assert "exploding_activations" in check_initialization(big, x).kinds()
    dead = keras.Sequential([keras.Input((32,)),
                             keras.layers.Dense(32, activation="relu", bias_initializer=keras.initializers.Constant(-50.0)),
                             keras.layers.Dense(4)])
    result = check_initialization(dead, x)
    assert "dead_relu" in result.kinds()
    assert result.layers[0].dead_fraction == 1.0


def test_bad_arguments():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x = np.ones((4, 3), "float32")
    with pytest.raises(ValueError, match="Received: ratio_threshold=1"):
        check_initialization(model, x, ratio_threshold=1)
    with pytest.raises(ValueError, match="Received: dead_threshold=1.5"):
        check_initialization(model, x, dead_threshold=1.5)


def test_cnn_depth_comparison_uses_the_convolution_stack(batch):
    x, y = batch
    keras.utils.set_random_seed(0)
    good = tk.models.cnn((40,), 10, filters=(16, 16, 16), batch_norm=False, kernel_initializer="he_normal")
    assert check_initialization(good, x[:64], y[:64]).passed
    tiny = tk.models.cnn((40,), 10, filters=(16,) * 6, batch_norm=False, activation="tanh",
                         kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))
    result = check_initialization(tiny, x[:64], y[:64])
    assert {"vanishing_activations", "vanishing_gradients"} <= result.kinds()
    assert all(w.layer.startswith("conv_") for w in result.warnings if w.kind.startswith("vanishing"))


def _advice(result, kind):
    """What a warning of ``kind`` tells the user to try."""
    reason = next(w.reason for w in result.warnings if w.kind == kind)
    return reason.split("; try ", 1)[1]


def test_advice_names_what_the_model_does_not_already_use(batch):
    """Issue 17: a Glorot-initialized ReLU network was told to "try He/Glorot/LSUV"."""
    x, y = batch
    keras.utils.set_random_seed(0)
    glorot = tk.models.mlp((40,), 10, depth=10, width=64, kernel_initializer="glorot_uniform")
    result = check_initialization(glorot, x, y)
    advice = _advice(result, "vanishing_activations")
    assert "Glorot" not in advice and "He (he_normal)" in advice and "LSUV" in advice

    # Already He with ReLU, and still shrinking (each block halves its output): LSUV next.
    blocks = []
    for _ in range(8):
        blocks += [keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal"),
                   keras.layers.Rescaling(0.5)]
    halving = keras.Sequential([keras.Input((40,)), *blocks,
                                keras.layers.Dense(10, kernel_initializer="he_normal")])
    result = check_initialization(halving, x, y)
    advice = _advice(result, "vanishing_activations")
    assert "He" not in advice and "LSUV" in advice
    # ... and after LSUV, what is left is the architecture.
    result = check_initialization(halving, x, y, initialized_with="lsuv")
    advice = _advice(result, "vanishing_activations")
    assert "LSUV" not in advice and "normalization" in advice


def test_a_one_unit_output_without_labels_is_not_flagged(batch):
    """One surrogate direction for all examples made a 1-unit output's gradient the same
    on every example: its std 0, and a false 'exploding_gradients' (growth 1e26x)."""
    x, _ = batch
    keras.utils.set_random_seed(0)
    model = tk.models.mlp((40,), 1, depth=3, width=32, activation="relu", kernel_initializer="he_normal")
    result = check_initialization(model, x)
    assert result.passed, str(result)
    assert all(s.gradient_std > 0 for s in result.layers), str(result)


def test_a_model_with_two_inputs_takes_a_list_or_a_dict(batch):
    x, _ = batch
    a, b = keras.Input((24,), name="a"), keras.Input((16,), name="b")
    hidden = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu", name="da")(a),
                                         keras.layers.Dense(8, activation="relu", name="db")(b)])
    model = keras.Model([a, b], keras.layers.Dense(3, name="head")(hidden))
    as_list = check_initialization(model, [x[:, :24], x[:, 24:]])
    as_dict = check_initialization(model, {"b": x[:, 24:], "a": x[:, :24]})
    assert as_list.to_dict() == as_dict.to_dict()
    probe = keras.Model(model.inputs, model.get_layer("db").output)  # a direct computation
    out = keras.ops.convert_to_numpy(probe([x[:, :24], x[:, 24:]]))
    assert next(s for s in as_list.layers if s.name == "db").activation_std == pytest.approx(out.std(), rel=1e-5)
    with pytest.raises(ValueError, match=r"`x_batch` must hold the same number of examples for every input. "
                                         r"Received: x_batch with 10, 256 examples"):
        check_initialization(model, [x[:10, :24], x[:, 24:]])
