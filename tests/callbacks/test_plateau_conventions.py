"""ReduceLROnPlateau conventions that the other tests leave open.

* ``threshold_mode="rel"`` with a negative best: the docstring's rule is
  ``q < q* - min_delta * |q*|`` (``mode="min"``); torch's is ``q < q* (1 - threshold)``,
  the same for ``q* > 0`` but a looser bar for ``q* < 0``. Reference: the
  docstring's rule and Keras's counting (``wait >= patience``) transcribed below.
* Non-finite monitored values (NaN, inf) are decided as Keras's own callback decides them.
"""

import math
import warnings

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import ReduceLROnPlateau


def _compiled(lr=1.0):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _drive(callback, values):
    model = _compiled()
    callback.set_model(model)
    callback.on_train_begin()
    lrs = []
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {"val_loss": value})
        lrs.append(float(model.optimizer.learning_rate))
    return lrs


def _docstring_rule(values, factor, patience, min_delta):
    """mode="min", threshold_mode="rel", cooldown=0, min_lr=0, transcribed from the docstring."""
    lr, best, wait, out = 1.0, None, 0, []
    for q in values:
        if best is None or q < best - min_delta * abs(best):
            best, wait = q, 0
        else:
            wait += 1
            if wait >= patience:
                lr, wait = lr * factor, 0
        out.append(lr)
    return out


# A slowly improving negative loss (a log-likelihood bound, say): each step is 0.3%
# better, below the 1% relative bar of the docstring but above torch's for q* < 0.
_NEGATIVE = [-1.0 * 1.003**k for k in range(8)]


def test_relative_threshold_uses_abs_of_a_negative_best():
    ours = _drive(ReduceLROnPlateau(mode="min", factor=0.5, patience=2, min_delta=0.01,
                                    threshold_mode="rel"), _NEGATIVE)
    reference = _docstring_rule(_NEGATIVE, factor=0.5, patience=2, min_delta=0.01)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
    assert reference[-1] < 1.0  # the 0.3% steps do not count: reductions happen


def test_torch_differs_for_a_negative_best_by_design():
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=1, threshold=0.01, threshold_mode="rel")
    for value in _NEGATIVE:
        scheduler.step(value)
    # torch's q < q* (1 - 0.01) = q* + 0.01 |q*| takes every 0.3% step as progress.
    assert optimizer.param_groups[0]["lr"] == 1.0


@pytest.mark.parametrize("sequence", [
    [math.nan, 1.0, 0.9, 0.9, 0.9, 0.8, 0.8],  # NaN first: Keras keeps it as the best
    [1.0, math.nan, math.nan, 0.9, 0.9, 0.9, 0.9],
    [math.inf, 1.0, 1.0, 1.0, 0.5, 0.5],
])
def test_non_finite_values_match_keras(sequence):
    kwargs = dict(monitor="val_loss", factor=0.5, patience=2, min_delta=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = _drive(ReduceLROnPlateau(**kwargs), sequence)
        reference = _drive(keras.callbacks.ReduceLROnPlateau(**kwargs), sequence)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
