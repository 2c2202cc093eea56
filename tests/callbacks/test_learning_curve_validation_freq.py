"""LearningCurveDiagnosis with validation at some epochs only (``model.fit(..., validation_freq=k)``),
and ``diagnose_learning_curves(..., val_epochs=...)``.

Keras logs ``val_loss`` only after the epochs ``e`` (0-based) with ``(e + 1) % k == 0``, so
the validation curve is shorter than the training curve: it used to be dropped without a
word (no overfitting rule, no underfitting gap check, no validation curve in the plot).
The expected numbers below are worked out by hand from the rules' formulas.
"""

import doctest

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import LearningCurveDiagnosis
from keras_trainkit.callbacks import learning_curve
from keras_trainkit.callbacks.learning_curve import (
    LR_TOO_HIGH,
    OVERFITTING,
    SUGGESTIONS,
    UNDERFITTING,
    Finding,
    diagnose_learning_curves,
)

# A falling training curve (T = 8, L_init = L[0] = 2.0), validation at the 0-based epochs 1, 3, 5, 7.
FALLING = [2.0, 1.6, 1.2, 0.9, 0.7, 0.5, 0.4, 0.3]
# Falls fast, then a plateau high up (T = 9, m = 3, L_init = 2.3).
PLATEAU = [2.3, 1.9, 1.8, 1.76, 1.75, 1.745, 1.742, 1.741, 1.740]


# --- real fits -------------------------------------------------------------------------------------

def _fit_noisy_labels(diagnosis, validation_freq, epochs=16):
    """A wide MLP memorizes 40 examples, half of them with random labels; the validation set
    (200 clean examples of the same rule) loses and then gains loss: overfitting."""
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(16, 4))

    def data(n, noise):
        x = rng.normal(size=(n, 16)).astype("float32")
        y = np.argmax(x @ weights, axis=1)
        flipped = rng.random(n) < noise
        y[flipped] = rng.integers(0, 4, size=flipped.sum())
        return x, y

    x, y = data(40, 0.5)
    validation = data(200, 0.0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model.fit(x, y, batch_size=40, epochs=epochs, verbose=0, validation_data=validation,
                     validation_freq=validation_freq, callbacks=[diagnosis])


def test_validation_every_second_epoch_names_overfitting():
    diagnosis = LearningCurveDiagnosis()
    history = _fit_noisy_labels(diagnosis, validation_freq=2)
    val_loss = history.history["val_loss"]
    assert len(val_loss) == 8 and len(history.history["loss"]) == 16
    assert OVERFITTING in diagnosis.names and "overfitting" in diagnosis.report
    assert diagnosis.val_epochs == [1, 3, 5, 7, 9, 11, 13, 15]  # Keras: after epochs 2, 4, ..., 16
    evidence = next(f for f in diagnosis.findings if f.name == OVERFITTING).evidence
    best = int(np.argmin(val_loss))  # the j-th validation is after epoch 2 * (j + 1)
    assert evidence["best_val_epoch"] == 2 * (best + 1) and evidence["best_val_epoch"] % 2 == 0
    assert evidence["best_val_loss"] == pytest.approx(val_loss[best])
    assert evidence["final_val_loss"] == pytest.approx(val_loss[-1])
    assert evidence["train_loss_at_best"] == pytest.approx(history.history["loss"][2 * (best + 1) - 1])
    assert evidence["final_train_loss"] == pytest.approx(history.history["loss"][-1])


def test_validation_at_listed_epochs_is_plotted_at_those_epochs(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    closed = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (closed.append(fig), close(fig)))
    png = tmp_path / "curves.png"
    diagnosis = LearningCurveDiagnosis(plot_path=str(png))
    history = _fit_noisy_labels(diagnosis, validation_freq=[2, 5, 9, 12], epochs=12)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    train_line, val_line = closed[-1].axes[0].lines
    assert list(train_line.get_xdata()) == list(range(1, 13))
    assert list(val_line.get_xdata()) == [2, 5, 9, 12]
    assert list(val_line.get_ydata()) == pytest.approx(history.history["val_loss"])
    assert diagnosis.val_epochs == [1, 4, 8, 11]


# --- the callback on hand-made logs ---------------------------------------------------------------

def _feed(diagnosis, epoch_logs):
    diagnosis.on_train_begin()
    diagnosis.on_train_batch_end(0, {"loss": 2.0})
    for epoch, logs in enumerate(epoch_logs):
        diagnosis.on_epoch_end(epoch, logs)
    diagnosis.on_train_end()


def test_every_epoch_validation_is_recorded_at_every_epoch():
    diagnosis = LearningCurveDiagnosis()
    _feed(diagnosis, [{"loss": loss, "val_loss": loss + 0.1} for loss in FALLING])
    assert diagnosis.val_epochs == list(range(8)) and "Note" not in diagnosis.report
    assert diagnosis.findings == diagnose_learning_curves(FALLING, [v + 0.1 for v in FALLING], 2.0)


def test_a_validation_value_without_a_training_loss_is_left_out_and_reported():
    diagnosis = LearningCurveDiagnosis()
    logs = [{"loss": loss} for loss in FALLING]
    for epoch, val in zip([1, 3, 5, 7], [1.5, 1.2, 1.3, 1.6]):
        logs[epoch]["val_loss"] = val
    logs.insert(0, {"val_loss": 9.0})  # an epoch that logged validation only
    _feed(diagnosis, logs)
    assert diagnosis.loss == FALLING and diagnosis.val_loss == [9.0, 1.5, 1.2, 1.3, 1.6]
    assert diagnosis.names == [OVERFITTING] and diagnosis.findings[0].evidence["best_val_epoch"] == 4
    assert diagnosis.val_epochs == [None, 1, 3, 5, 7]
    assert "1 of the 5 `val_loss` values were logged at epochs without `loss`" in diagnosis.report
    # fit again: the state starts over
    _feed(diagnosis, [{"loss": loss} for loss in FALLING])
    assert diagnosis.val_loss == [] and diagnosis.val_epochs == [] and "Note" not in diagnosis.report


# --- diagnose_learning_curves(..., val_epochs=...) ------------------------------------------------

def test_sparse_validation_overfitting_evidence():
    # b = argmin([1.5, 1.2, 1.3, 1.6]) = 1 < 3; 1.6 > 1.2 * 1.05 = 1.26; LV = L[1, 3, 5, 7] = [1.6, 0.9, 0.5, 0.3],
    # LV[-1] = 0.3 < LV[1] = 0.9; L[-1] = min(L); 0.3 < 0.5 * 2.0. No other rule: m = 2, r = 0.1 / 0.4 < 0.5,
    # recent drop (0.5 - 0.3) / 0.5 = 0.4 >= 5%.
    found = diagnose_learning_curves(FALLING, [1.5, 1.2, 1.3, 1.6], val_epochs=[1, 3, 5, 7])
    assert [f.name for f in found] == [OVERFITTING]
    assert found[0].evidence == pytest.approx({
        "best_val_epoch": 4, "best_val_loss": 1.2, "final_val_loss": 1.6, "val_rise": 1.6 / 1.2 - 1,
        "train_loss_at_best": 0.9, "final_train_loss": 0.3,
    })
    assert found[0].suggestion == SUGGESTIONS[OVERFITTING]
    # without val_epochs a curve of another length is left out, as before
    assert diagnose_learning_curves(FALLING, [1.5, 1.2, 1.3, 1.6]) == []


def test_last_validation_before_the_last_epoch():
    # E = [0, 2, 4, 6]: b = 1, 1.5 > 1.3 * 1.05 = 1.365, LV = [2.0, 1.2, 0.7, 0.4], 0.4 < 1.2.
    found = diagnose_learning_curves(FALLING, [1.9, 1.3, 1.4, 1.5], val_epochs=[0, 2, 4, 6])
    assert found[0].evidence == pytest.approx({
        "best_val_epoch": 3, "best_val_loss": 1.3, "final_val_loss": 1.5, "val_rise": 0.2 / 1.3,
        "train_loss_at_best": 1.2, "final_train_loss": 0.3,
    })
    # the best validation is the last one (b = len(V) - 1): no overfitting
    assert diagnose_learning_curves(FALLING, [1.5, 1.4, 1.3, 1.2], val_epochs=[1, 3, 5, 7]) == []
    # a single validation value (len(V) < 2): no overfitting
    assert diagnose_learning_curves(FALLING, [1.5], val_epochs=[7]) == []


def test_sparse_validation_underfitting_gap_uses_the_training_loss_at_the_last_validation():
    # PLATEAU: m = 3, recent drop (1.745 - 1.740) / 1.745 < 5%, r = (0.005 / 3) / (0.54 / 3) < 0.5,
    # 1.74 >= 0.5 * 2.3. E = [1, 3, 5]: LV[-1] = L[5] = 1.745, the gap bound 1.745 * 1.1 = 1.9195.
    found = diagnose_learning_curves(PLATEAU, [1.95, 1.93, 1.915], val_epochs=[1, 3, 5])
    assert [f.name for f in found] == [UNDERFITTING]  # 1.915 <= 1.9195 (but > L[-1] * 1.1 = 1.914)
    assert found[0].evidence == pytest.approx({
        "final_train_loss": 1.74, "initial_loss": 2.3, "drop_last_epochs": 0.005 / 1.745, "final_val_loss": 1.915,
    })
    # 1.93 > 1.9195: validation far above training, no underfitting (and no overfitting: 1.93 <= 1.85 * 1.05)
    assert diagnose_learning_curves(PLATEAU, [1.85, 1.88, 1.93], val_epochs=[1, 3, 5]) == []
    # without val_epochs that curve was left out and the gap never checked
    assert [f.name for f in diagnose_learning_curves(PLATEAU, [1.85, 1.88, 1.93])] == [UNDERFITTING]


@pytest.mark.parametrize("val, val_epochs, epoch", [
    ([1.5, 1.2, float("nan"), 1.6], [1, 3, 5, 7], 6),  # V[2] is epoch E[2] + 1 = 6 (not (8 + 2) % 8 + 1 = 3)
    ([float("inf"), 1.2, 1.3, 1.6], [1, 3, 5, 7], 2),
    ([1.5, 1.2, 1.3, float("-inf")], [0, 2, 4, 6], 7),
])
def test_non_finite_validation_value_names_its_epoch(val, val_epochs, epoch):
    found = diagnose_learning_curves(FALLING, val, val_epochs=val_epochs)
    assert found == [Finding(LR_TOO_HIGH, {"first_non_finite_epoch": epoch}, SUGGESTIONS[LR_TOO_HIGH])]


def test_non_finite_training_loss_comes_first():
    loss = FALLING[:4] + [float("nan")] + FALLING[5:]
    found = diagnose_learning_curves(loss, [1.5, 1.2, 1.3, float("nan")], val_epochs=[1, 3, 5, 7])
    assert found[0].evidence == {"first_non_finite_epoch": 5}


EVERY_EPOCH_CASES = {
    # b = 1, 2.6 > 1.8 * 1.05, L[-1] = 0.3 < L[1] = 1.5, 0.3 < 0.5 * 2.3; m = 1, r = 0.3 / 0.8 < 0.5,
    # recent drop (0.6 - 0.3) / 0.6 >= 5%.
    "overfit": ([2.3, 1.5, 1.0, 0.6, 0.3], [2.2, 1.8, 1.9, 2.2, 2.6], [(OVERFITTING, {
        "best_val_epoch": 2, "best_val_loss": 1.8, "final_val_loss": 2.6, "val_rise": 2.6 / 1.8 - 1,
        "train_loss_at_best": 1.5, "final_train_loss": 0.3})]),
    # see the sparse underfitting test; 1.79 <= 1.74 * 1.1
    "underfit": (PLATEAU, [v + 0.05 for v in PLATEAU], [(UNDERFITTING, {
        "final_train_loss": 1.74, "initial_loss": 2.3, "drop_last_epochs": 0.005 / 1.745, "final_val_loss": 1.79})]),
    # no fall: r = 0, recent drop 0, 2.3 >= 0.5 * 2.3, 2.31 <= 2.3 * 1.1
    "flat": ([2.3] * 8, [2.31] * 8, [(UNDERFITTING, {
        "final_train_loss": 2.3, "initial_loss": 2.3, "drop_last_epochs": 0.0, "final_val_loss": 2.31})]),
    "nan in validation": ([2.0, 1.5, 1.2, 1.0, 0.9], [2.1, 1.6, float("inf"), 1.1, 1.0], [(LR_TOO_HIGH, {
        "first_non_finite_epoch": 3})]),
    # validation falls with training: nothing
    "healthy": (FALLING, [v + 0.1 for v in FALLING], []),
}


@pytest.mark.parametrize("case", sorted(EVERY_EPOCH_CASES))
def test_every_epoch_val_epochs_gives_the_same_findings(case):
    loss, val, expected = EVERY_EPOCH_CASES[case]
    default = diagnose_learning_curves(loss, val)
    explicit = diagnose_learning_curves(loss, val, val_epochs=list(range(len(loss))))
    assert explicit == default
    assert [(f.name, f.evidence) for f in explicit] == [(name, pytest.approx(e)) for name, e in expected]


def test_val_epochs_accepts_numpy_integers_and_no_validation():
    found = diagnose_learning_curves(FALLING, [1.5, 1.2, 1.3, 1.6], val_epochs=np.arange(1, 8, 2))
    assert found[0].evidence["best_val_epoch"] == 4
    assert diagnose_learning_curves(FALLING, None, val_epochs=[]) == diagnose_learning_curves(FALLING) == []


@pytest.mark.parametrize("loss, val, val_epochs, message", [
    (FALLING, [1.5, 1.2, 1.3], [1, 3], r"one epoch per value of `val_loss` \(3 values\), not 2"),
    (FALLING, None, [1], r"one epoch per value of `val_loss` \(0 values\), not 1"),
    (FALLING, [1.5, 1.2, 1.3], [1, 1, 3], "strictly increasing"),
    (FALLING, [1.5, 1.2, 1.3], [3, 1, 5], "strictly increasing"),
    (FALLING, [1.5, 1.2, 1.3], [-1, 2, 4], r"0 <= epoch < 8"),
    (FALLING, [1.5, 1.2, 1.3], [1, 3, 8], r"0 <= epoch < 8"),
    ([2.0, 1.0], [1.0], [2], r"0 <= epoch < 2"),  # checked even below min_epochs
    (FALLING, [1.5, 1.2, 1.3], [1.0, 3, 5], "must hold integers"),
    (FALLING, [1.5, 1.2, 1.3], [1.5, 3, 5], "must hold integers"),
    (FALLING, [1.5, 1.2, 1.3], [True, 3, 5], "must hold integers"),
    (FALLING, [1.5, 1.2, 1.3], ["1", 3, 5], "must hold integers"),
])
def test_bad_val_epochs(loss, val, val_epochs, message):
    with pytest.raises(ValueError, match=rf"Argument `val_epochs` .*{message}.*Received: val_epochs="):
        diagnose_learning_curves(loss, val, val_epochs=val_epochs)


def test_val_epochs_must_be_iterable():
    with pytest.raises(TypeError, match="Received: val_epochs=3"):
        diagnose_learning_curves(FALLING, [1.5], val_epochs=3)


def test_docstring_examples_run():
    result = doctest.testmod(learning_curve, verbose=False)
    assert result.attempted >= 4 and result.failed == 0
