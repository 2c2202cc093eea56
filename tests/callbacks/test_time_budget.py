"""TimeBudget stops at the end of the batch that crosses the budget."""

import copy

import keras
import numpy as np
import pytest

from keras_trainkit.callbacks import TimeBudget
from keras_trainkit.callbacks import time_budget as time_budget_module


class _FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_stops_after_the_crossing_batch(monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(time_budget_module, "_clock", clock)
    seen = []

    class Tick(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            clock.now += 1.0  # every batch "takes" one second
            seen.append(batch)

    budget = TimeBudget(seconds=4.5)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    # Tick runs before TimeBudget, so after batch k (0-based) the clock reads k + 1.
    history = model.fit(np.ones((40, 2)), np.ones(40), batch_size=4, epochs=3, verbose=0,
                        callbacks=[Tick(), budget])
    # 5 s are reached at the end of the 5th batch (index 4) of epoch 0.
    assert budget.stopped_reason == "time_budget"
    assert (budget.stopped_epoch, budget.stopped_batch) == (0, 4)
    assert seen == [0, 1, 2, 3, 4]
    assert len(history.history["loss"]) == 1  # the epoch still ended cleanly
    assert budget.elapsed == pytest.approx(5.0)

    # Reusable: state resets in on_train_begin.
    clock.now = 100.0
    seen.clear()
    model.fit(np.ones((8, 2)), np.ones(8), batch_size=4, epochs=1, verbose=0,
              callbacks=[Tick(), budget])
    assert budget.stopped_reason is None and seen == [0, 1]
    assert copy.deepcopy(budget).seconds == 4.5


@pytest.mark.parametrize("seconds", [0, -1.0, float("inf")])
def test_bad_seconds(seconds):
    with pytest.raises(ValueError, match="Received: seconds="):
        TimeBudget(seconds=seconds)
