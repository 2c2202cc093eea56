import re

import keras
import numpy as np
import pytest

from keras_trainkit import models


@pytest.mark.parametrize("name,shape", [("mlp", (40,)), ("cnn", (40,)), ("cnn", (8, 8, 1)),
                                        ("mlp", (8, 8, 1))])
def test_builders_give_logits(name, shape):
    model = models.build(name, shape, 10)
    out = model(np.zeros((2, *shape), "float32"))
    assert tuple(out.shape) == (2, 10)


def test_mlp_layer_names_and_depth():
    model = models.mlp((40,), 10, depth=4, width=16, batch_norm=True, dropout=0.1)
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n.startswith("dense_")] == [f"dense_{i}" for i in range(4)]
    assert "bn_3" in names and "dropout_3" in names and names[-1] == "logits"


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: depth=0"):
        models.mlp((40,), 10, depth=0)
    with pytest.raises(ValueError, match="Received: model='resnet'"):
        models.build("resnet", (40,), 10)
    with pytest.raises(ValueError, match="Received: filters=()"):
        models.cnn((40,), 10, filters=())
    # a string was truthy: "False" turned batch normalization on
    with pytest.raises(TypeError, match="Argument `batch_norm` must be of type bool.*'False'"):
        models.mlp((40,), 10, batch_norm="False")
    with pytest.raises(TypeError, match="Argument `batch_norm` must be of type bool.*'False'"):
        models.cnn((40,), 10, batch_norm="False")
    # "False" averaged probabilities as if they were logits
    members = [models.mlp((4,), 3, depth=1, width=4) for _ in range(2)]
    with pytest.raises(TypeError, match="Argument `from_logits` must be of type bool.*'False'"):
        models.average_models(members, from_logits="False")
    # the layer on its own: "no" was truthy, so probabilities were averaged as logits
    with pytest.raises(TypeError, match="Argument `from_logits` must be of type bool.*'no'"):
        models.ProbabilityAverage(from_logits="no")


@pytest.mark.parametrize("builder", [models.mlp, models.cnn])
@pytest.mark.parametrize("input_shape", [40, "40", (), (40, 0), (40.0,), (True,)])
def test_input_shape_must_be_sizes(builder, input_shape):
    """``mlp(40, 10)`` raised "'int' object is not iterable"; a 0 or float size failed later,
    inside Keras, without naming the argument."""
    with pytest.raises(ValueError, match=r"Argument `input_shape` must be a shape: a tuple of positive "
                                         r"integers.*Received: input_shape=" + re.escape(repr(input_shape))):
        builder(input_shape, 10)


def test_input_shape_takes_lists_numpy_sizes_and_none():
    assert models.mlp([40], 10).input_shape == (None, 40)
    assert models.cnn((np.int64(40), 1), 10).input_shape == (None, 40, 1)
    assert models.cnn((None, 1), 10).input_shape == (None, None, 1)


@pytest.mark.parametrize("shape, kernel_size, expected", [
    ((40,), None, (5,)), ((40,), 7, (7,)),
    ((8, 8, 1), None, (3, 3)), ((8, 8, 1), 5, (5, 5)), ((8, 8, 1), 7, (7, 7)),
])
def test_cnn_kernel_size_is_the_one_asked(shape, kernel_size, expected):
    """A 2-D kernel_size was cut to 3, so a search over CNNSpace's (3, 5, 7) on the digits
    built the same 3x3 model for all three and reported the size it did not use."""
    model = models.cnn(shape, 10, kernel_size=kernel_size)
    assert tuple(model.get_layer("conv_0").kernel.shape[:-2]) == expected


def test_cnn_space_builds_the_kernel_size_it_records():
    import keras_tuner

    from keras_trainkit import tuning

    hp = keras_tuner.HyperParameters()
    hp.Fixed("kernel_size", 7)
    model = tuning.CNNSpace().build(hp, (8, 8, 1), 10)
    assert tuple(model.get_layer("conv_0").kernel.shape[:2]) == (7, 7)


def test_initializer_and_regularizer_reach_the_documented_layers():
    """``cnn``: the convolutions and the hidden Dense layer get them, the linear logits
    layer neither; ``mlp``: every Dense layer gets the initializer, the logits layer no
    regularizer (as the docstrings say)."""
    regularizer = keras.regularizers.L2(0.1)
    model = models.cnn((40,), 10, filters=(4, 8), kernel_initializer="zeros", kernel_regularizer=regularizer)
    for name in ("conv_0", "conv_1", "dense"):
        layer = model.get_layer(name)
        assert not np.any(keras.ops.convert_to_numpy(layer.kernel)), name
        assert layer.kernel_regularizer is regularizer, name
    logits = model.get_layer("logits")
    assert np.any(keras.ops.convert_to_numpy(logits.kernel))
    assert logits.kernel_regularizer is None
    model = models.mlp((40,), 10, depth=1, width=8, kernel_initializer="zeros", kernel_regularizer=regularizer)
    assert model.get_layer("dense_0").kernel_regularizer is regularizer
    for name in ("dense_0", "logits"):
        assert not np.any(keras.ops.convert_to_numpy(model.get_layer(name).kernel)), name
    assert model.get_layer("logits").kernel_regularizer is None


def _smoothed_cross_entropy(logits, labels, classes, smoothing):
    """NumPy: -sum_c q'_c log softmax(z)_c with q' = one_hot(y) (1 - eps) + eps / C, per example."""
    z = logits - logits.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    q = np.eye(classes)[labels] * (1.0 - smoothing) + smoothing / classes
    return -(q * log_p).sum(axis=-1)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("form", ["indices", "column", "one_hot", "float_indices"])
def test_class_crossentropy_takes_indices_and_one_hot_rows(form, smoothing):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 4)).astype("float32") * 3
    labels = np.array([0, 3, 1, 1, 2, 0, 3])
    y = {"indices": labels, "column": labels[:, None], "one_hot": np.eye(4, dtype="float32")[labels],
         "float_indices": labels.astype("float32")}[form]
    loss = models.ClassCrossentropy(from_logits=True, label_smoothing=smoothing)
    expected = _smoothed_cross_entropy(logits.astype("float64"), labels, 4, smoothing).mean()
    np.testing.assert_allclose(float(loss(y, logits)), expected, rtol=1e-5)


def test_class_crossentropy_in_a_model_round_trips_and_evaluates_indices(tmp_path):
    keras.utils.set_random_seed(0)
    model = models.mlp((5,), 3, depth=1, width=8)
    model.compile("sgd", models.ClassCrossentropy(from_logits=True, label_smoothing=0.2), metrics=["accuracy"])
    x = np.random.default_rng(1).normal(size=(12, 5)).astype("float32")
    y = np.array([0, 1, 2] * 4)
    on_indices = model.evaluate(x, y, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, models.ClassCrossentropy)
    assert loaded.loss.get_config()["label_smoothing"] == 0.2
    np.testing.assert_allclose(loaded.evaluate(x, np.eye(3)[y], verbose=0), on_indices, rtol=1e-6)
