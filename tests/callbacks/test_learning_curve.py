"""LearningCurveDiagnosis on real MNIST-1D runs (overfitting, learning rate 1.0, healthy)
and on hand-made curves (underfitting, learning rate too low)."""

import copy

import keras
import pytest

import keras_trainkit as tk
from keras_trainkit.callbacks import LearningCurveDiagnosis
from keras_trainkit.callbacks.learning_curve import (
    LR_TOO_HIGH,
    LR_TOO_LOW,
    OVERFITTING,
    UNDERFITTING,
    diagnose_learning_curves,
)


def _run(optimizer, n, width, epochs, batch_size, diagnosis):
    (x, y), (x_test, y_test) = tk.datasets.load_mnist1d()
    keras.utils.set_random_seed(0)
    model = tk.models.mlp((40,), 10, depth=2, width=width)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model.fit(x[:n], y[:n], batch_size=batch_size, epochs=epochs, verbose=0,
                     validation_data=(x_test[:300], y_test[:300]), callbacks=[diagnosis])


def test_overfitting_run_is_named_and_png_written(tmp_path):
    png = tmp_path / "curves.png"
    diagnosis = LearningCurveDiagnosis(plot_path=str(png))
    _run(keras.optimizers.Adam(2e-3), n=150, width=256, epochs=12, batch_size=50, diagnosis=diagnosis)
    assert diagnosis.names == [OVERFITTING]
    evidence = diagnosis.findings[0].evidence
    assert evidence["final_val_loss"] > evidence["best_val_loss"] and evidence["best_val_epoch"] < 12
    assert "smaller model" in diagnosis.findings[0].suggestion and "overfitting" in diagnosis.report
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learning_rate_one_is_too_high():
    diagnosis = LearningCurveDiagnosis()
    _run(keras.optimizers.Adam(1.0), n=1000, width=128, epochs=8, batch_size=100, diagnosis=diagnosis)
    assert diagnosis.names == [LR_TOO_HIGH]
    assert diagnosis.findings[0].evidence["max_train_loss"] > 10 * diagnosis.initial_loss


def test_healthy_run_names_nothing():
    diagnosis = LearningCurveDiagnosis()
    history = _run(keras.optimizers.Adam(1e-3), n=1000, width=128, epochs=8, batch_size=50,
                   diagnosis=diagnosis)
    assert history.history["val_loss"][-1] < history.history["val_loss"][0]
    assert diagnosis.findings == [] and "no problem" in diagnosis.report
    # reusable and deep-copyable
    clone = copy.deepcopy(diagnosis)
    assert clone.get_config() == diagnosis.get_config() and clone.findings == []


def test_hand_made_curves():
    # slow and steady: equal drops every epoch, far above half the initial loss
    slow = [2.30 - 0.01 * i for i in range(10)]
    assert [f.name for f in diagnose_learning_curves(slow, slow)] == [LR_TOO_LOW]
    # fast drop, then a plateau at a high level, validation close to training
    plateau = [2.3, 1.9, 1.8, 1.76, 1.75, 1.745, 1.742, 1.741, 1.740]
    val = [v + 0.05 for v in plateau]
    found = diagnose_learning_curves(plateau, val)
    assert [f.name for f in found] == [UNDERFITTING]
    assert found[0].evidence["final_train_loss"] == pytest.approx(1.74)
    # NaN anywhere: too high
    assert [f.name for f in diagnose_learning_curves([2.0, 1.0, float("nan"), 1.0], None)] == [LR_TOO_HIGH]
    # oscillating training loss
    zigzag = [2.0, 1.5, 1.8, 1.3, 1.7, 1.2, 1.6, 1.1]
    assert LR_TOO_HIGH in [f.name for f in diagnose_learning_curves(zigzag, None)]
    # too few epochs: nothing
    assert diagnose_learning_curves([2.0, 3.0, 9.0], None) == []


@pytest.mark.parametrize("kwargs,name", [({"overfit_tolerance": -0.1}, "overfit_tolerance"),
                                         ({"early_fraction": 1.5}, "early_fraction"),
                                         ({"explosion_factor": 1.0}, "explosion_factor"),
                                         ({"min_epochs": 2}, "min_epochs")])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        LearningCurveDiagnosis(**kwargs)


def test_flat_epochs_are_no_fall_and_a_flat_start_is_no_steady_decrease():
    """A flat curve at ln(10) was "learning rate too low" (flat epochs counted as falls, and
    r = inf for no first drop): it is a plateau high up, underfitting. A stair-step curve
    falls at 3 of 9 epochs, not >= 90%: no finding."""
    from keras_trainkit.callbacks.learning_curve import diagnose_learning_curves

    assert [f.name for f in diagnose_learning_curves([2.3] * 8, [2.31] * 8)] == ["underfitting"]
    stairs = [2.0, 1.9, 1.9, 1.9, 1.9, 1.85, 1.85, 1.85, 1.8, 1.8]
    assert diagnose_learning_curves(stairs, [v + 0.01 for v in stairs]) == []
    steady = [2.3 - 0.02 * i for i in range(10)]
    assert [f.name for f in diagnose_learning_curves(steady)] == ["learning rate too low"]
