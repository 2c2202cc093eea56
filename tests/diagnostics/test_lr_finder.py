"""lr_find: plausible suggestion on MNIST-1D, exact restoration, formulas checked independently."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_trainkit as tk
from keras_trainkit.diagnostics import LRFinderResult, lr_find
from keras_trainkit.diagnostics.lr_finder import suggest, sweep_learning_rates

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _snapshot(model):
    optimizer_vars = {id(v): v for v in model.optimizer.variables}
    return ([np.array(v.numpy(), copy=True) for v in model.variables],
            [np.array(v.numpy(), copy=True) for v in optimizer_vars.values()])


def _assert_bitwise(before, after):
    for group_before, group_after in zip(before, after):
        assert len(group_before) == len(group_after)
        for a, b in zip(group_before, group_after):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()


def _smoothed_reference(losses, beta):
    """Independent transcription: a_i = beta a_{i-1} + (1 - beta) l_i; s_i = a_i / (1 - beta^i)."""
    out, a = [], 0.0
    for i, loss in enumerate(losses):
        a = beta * a + (1 - beta) * loss
        out.append(a / (1 - beta ** (i + 1)))
    return np.array(out)


def test_mnist1d_cnn_adam(tmp_path):
    (x, y), _ = tk.datasets.load_mnist1d()
    x, y = x[:1024], y[:1024]
    keras.utils.set_random_seed(0)
    model = tk.models.build("cnn", (40,), 10)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)  # non-trivial optimizer state
    learning_rate = model.optimizer._learning_rate
    before = _snapshot(model)

    # Up to lr = 100: at 10 Adam's divergence hangs on one batch of the shuffled order.
    result = lr_find(model, (x, y), num_steps=60, batch_size=64, end_lr=100.0)

    _assert_bitwise(before, _snapshot(model))
    assert model.optimizer._learning_rate is learning_rate
    assert int(model.optimizer.iterations) == 4
    assert isinstance(result, LRFinderResult)
    assert 1e-4 <= result.suggestion <= 1e-1, result.suggestions
    assert set(result.suggestions) == {"valley", "steep", "minimum"}
    n = len(result.learning_rates)
    np.testing.assert_allclose(result.learning_rates, (1e-7 * (1e9) ** (np.arange(60) / 59))[:n])
    np.testing.assert_allclose(result.smoothed_losses, _smoothed_reference(result.losses, 0.98),
                               rtol=1e-12)
    # Adam at lr = 100 diverges: the sweep stops when smoothed > 4 x best so far.
    assert result.diverged and n < 60
    assert result.smoothed_losses[-1] > 4.0 * result.smoothed_losses[:-1].min()
    assert np.all(result.smoothed_losses[:-1] <= 4.0 * np.minimum.accumulate(result.smoothed_losses[:-1]))

    path = result.plot(tmp_path / "lr.png")
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000
    # Training continues normally from the restored state.
    history = model.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_schedule_accumulation_and_train_function_are_restored():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 1))).astype("float32")
    schedule = keras.optimizers.schedules.CosineDecay(0.05, decay_steps=100)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9, gradient_accumulation_steps=2), "mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    train_function = model.train_function
    before = _snapshot(model)
    lr_before = float(model.optimizer.learning_rate)

    seen = []
    original_train_on_batch = model.train_on_batch

    def counting_train_on_batch(*args, **kwargs):
        seen.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))  # the rate held
        return original_train_on_batch(*args, **kwargs)

    model.train_on_batch = counting_train_on_batch
    result = lr_find(model, (x, y), start_lr=1e-4, end_lr=1.0, num_steps=12, batch_size=16,
                     mode="linear", smoothing=0.0)
    del model.train_on_batch

    _assert_bitwise(before, _snapshot(model))
    assert model.optimizer._learning_rate is schedule
    assert model.train_function is train_function
    assert float(model.optimizer.learning_rate) == lr_before
    n = len(result.learning_rates)
    np.testing.assert_allclose(result.learning_rates, np.linspace(1e-4, 1.0, 12)[:n])
    # Each step is one update: two micro-batches at the same learning rate.
    np.testing.assert_allclose(seen, np.repeat(result.learning_rates, 2), rtol=1e-6)
    np.testing.assert_allclose(result.smoothed_losses, result.losses)  # smoothing=0


def test_suggestions_on_a_synthetic_curve():
    lrs = np.logspace(-5, 0, 51)
    loss = np.concatenate([np.linspace(3.0, 1.0, 36) ** 1.5, 5.0 + np.arange(15)])
    loss[10] = loss[9] + 0.5  # a bump inside the valley
    out = suggest(lrs, loss)
    assert out["minimum"] == pytest.approx(lrs[35] / 10)
    slopes = [(loss[i + 1] - loss[i]) / (np.log(lrs[i + 1]) - np.log(lrs[i])) for i in range(50)]
    assert out["steep"] == pytest.approx(lrs[int(np.argmin(slopes))])
    # Longest decreasing run: indices 0..35 without index 10 (35 points), middle at 0 + 35 // 2.
    assert out["valley"] == pytest.approx(lrs[17])


def test_sweep_formulas():
    np.testing.assert_allclose(sweep_learning_rates(1e-6, 1.0, 7, "exponential"),
                               [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    np.testing.assert_allclose(sweep_learning_rates(0.1, 0.5, 5, "linear"), [0.1, 0.2, 0.3, 0.4, 0.5])


@pytest.mark.parametrize("kwargs, match", [
    ({"start_lr": 0.0}, "Received: start_lr=0.0"),
    ({"end_lr": 1e-8}, "Received: end_lr=1e-08"),
    ({"num_steps": 1}, "Received: num_steps=1"),
    ({"mode": "cyclic"}, "Received: mode='cyclic'"),
    ({"smoothing": 1.0}, "Received: smoothing=1.0"),
    ({"divergence_threshold": 1.0}, "Received: divergence_threshold=1.0"),
])
def test_bad_arguments(kwargs, match):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    data = (np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32"))
    with pytest.raises(ValueError, match=match):
        lr_find(model, data, **kwargs)


def test_uncompiled_model_and_bad_data_are_refused():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="compiled.*Received: model="):
        lr_find(model, (np.zeros((4, 2)), np.zeros((4, 1))))
    model.compile("sgd", "mse")
    with pytest.raises(TypeError, match="Received: data="):
        lr_find(model, np.zeros((4, 2)))
    # Before: accepted, then "None values not supported" from Keras inside the sweep.
    x = np.zeros((4, 2), "float32")
    weights = [w.copy() for w in model.get_weights()]
    for no_targets in ((x,), (x, None), tf.data.Dataset.from_tensor_slices(x).batch(2)):
        with pytest.raises(ValueError, match=r"`data` must hold targets.*the compiled loss \('mse'\) needs "
                                             r"them. Received: data without targets"):
            lr_find(model, no_targets)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_plot_marks_the_true_minimum_and_names_each_rule():
    """The "minimum" suggestion is the lowest loss's lr / 10; the plot must not pass it
    off as the minimum: the lowest point is marked where it is, and each suggestion's
    label says its rule."""
    lrs = np.logspace(-5, 0, 51)
    smoothed = (np.log10(lrs) + 2.0) ** 2 + 1.0  # lowest at lr = 1e-2, loss 1
    result = LRFinderResult(learning_rates=lrs, losses=smoothed, smoothed_losses=smoothed)
    result.suggestions = suggest(lrs, smoothed)
    assert result.suggestions["minimum"] == pytest.approx(1e-3)
    figure = result.plot()
    points = {line.get_label(): (line.get_xdata(), line.get_ydata())
              for line in figure.axes[0].lines if len(line.get_xdata()) == 1}
    at_minimum = [label for label, (x, y) in points.items()
                  if x[0] == pytest.approx(1e-2) and y[0] == pytest.approx(1.0)]
    assert len(at_minimum) == 1 and "lowest" in at_minimum[0]
    minimum_label = next(label for label in points if label.startswith("minimum"))
    assert "/ 10" in minimum_label and "1.00e-03" in minimum_label
    assert any(label.startswith("valley") and "longest descent" in label for label in points)
    assert result.lowest_loss_learning_rate == pytest.approx(1e-2)


@pytest.mark.parametrize("trained_first", [True, False])
def test_spectral_norm_state_is_put_back(trained_first):
    """SpectralNorm's ``u`` lives outside the model's variables: before, the sweep's power
    iterations stayed in it, and the next fit (and ``model.save``) differed from a model
    that never ran ``lr_find``. A ``u`` made by the sweep gets its starting value back."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, size=64)

    def model():
        keras.utils.set_random_seed(0)  # fixed names: the start vector is keyed by the path
        m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(
            8, kernel_regularizer=tk.regularizers.SpectralNorm(0.1), name="spectral"),
            keras.layers.Dense(3, name="out")], name="net")
        m.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        if trained_first:
            m.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
        return m

    swept, reference = model(), model()
    lr_find(swept, (x, y), num_steps=20, batch_size=16)
    assert (swept.layers[0].kernel_regularizer.get_config()["state"]
            == reference.layers[0].kernel_regularizer.get_config()["state"]) or not trained_first
    after = swept.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False).history["loss"]
    expected = reference.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False).history["loss"]
    assert after == expected
    assert (swept.layers[0].kernel_regularizer.get_config()["state"]
            == reference.layers[0].kernel_regularizer.get_config()["state"])
