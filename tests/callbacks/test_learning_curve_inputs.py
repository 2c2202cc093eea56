"""``diagnose_learning_curves`` takes NumPy curves and refuses unknown thresholds."""

import numpy as np
import pytest

from keras_trainkit.callbacks.learning_curve import OVERFITTING, diagnose_learning_curves


def test_numpy_curves_are_diagnosed_like_lists():
    """Synthetic overfitting: training loss 2.3 e^{-t/2}, validation a parabola with its minimum at
    t = 2 (numpy argmin). A NumPy ``val_loss`` used to raise "The truth value of an array ... is
    ambiguous"."""
    t = np.arange(10.0)
    train = 2.3 * np.exp(-t / 2)
    val = 1.0 + 0.1 * (t - 2) ** 2
    findings = diagnose_learning_curves(train, val)
    assert [f.name for f in findings] == [OVERFITTING]
    best = int(np.argmin(val))
    assert findings[0].evidence["best_val_epoch"] == best + 1
    assert findings[0].evidence["val_rise"] == pytest.approx(val[-1] / val[best] - 1)
    assert findings[0].evidence["train_loss_at_best"] == pytest.approx(train[best])
    assert [f.evidence for f in findings] == [f.evidence for f in diagnose_learning_curves(list(train), list(val))]


def test_an_unknown_threshold_is_refused():
    """A misspelt threshold used to be ignored silently (the default applied instead)."""
    with pytest.raises(TypeError, match=r"overfit_tolerence.*Received: overfit_tolerence=0\.5"):
        diagnose_learning_curves([2.0, 1.5, 1.0, 0.5], [1.0, 0.9, 1.2, 1.5], overfit_tolerence=0.5)
