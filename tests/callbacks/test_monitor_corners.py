"""EarlyStopping and TrainingMonitor in four corners: no check ran, Prechelt's criteria on
a quantity that goes up, the optimizer state under a wrapper another callback removes, and
steps_per_execution > 1 (the batch hooks run once per call)."""

import keras
import numpy as np
import pytest

import keras_trainkit as tk

X = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
Y = X.sum(1, keepdims=True)


def model(steps_per_execution=1, learning_rate=0.1, optimizer=keras.optimizers.SGD):
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    net.compile(optimizer=optimizer(learning_rate), loss="mse", steps_per_execution=steps_per_execution)
    return net


@pytest.mark.parametrize("arguments", [dict(monitor="val_loss"), dict(monitor="loss", start_from_epoch=10)],
                         ids=["key never logged", "start_from_epoch not reached"])
def test_restore_best_weights_restores_nothing_when_no_check_ran(arguments):
    # Keras's own EarlyStopping keeps the trained weights; ours did put back the start's.
    weights = {}
    for name, callback in (("keras", keras.callbacks.EarlyStopping(restore_best_weights=True, **arguments)),
                           ("ours", tk.callbacks.EarlyStopping(restore_best_weights=True, **arguments))):
        net = model()
        start = net.get_weights()[0].copy()
        net.fit(X, Y, epochs=3, verbose=0, shuffle=False, callbacks=[callback])
        weights[name] = net.get_weights()[0]
        assert not np.allclose(weights[name], start)
    np.testing.assert_allclose(weights["ours"], weights["keras"], rtol=1e-6)


def test_prechelt_criteria_on_a_quantity_that_goes_up_are_refused():
    net = model()
    net.compile(optimizer="sgd", loss="mse", metrics=["accuracy"])
    stop = tk.callbacks.EarlyStopping(monitor="val_accuracy", UP_s=1, strip_length=2)
    refused = "mode.*must resolve to 'min'.*Received: mode='auto', monitor='val_accuracy'"
    # Keras builds the compiled metrics in the first step, so the first check tells.
    with pytest.raises(ValueError, match=refused):
        net.fit(X, Y, validation_split=0.25, epochs=3, verbose=0, callbacks=[stop])
    assert int(net.optimizer.iterations) == 2  # one epoch of 48 examples, batch size 32
    # Once they are built, before any step.
    start = [w.copy() for w in net.get_weights()]
    with pytest.raises(ValueError, match=refused):
        net.fit(X, Y, validation_split=0.25, epochs=3, verbose=0, callbacks=[stop])
    for before, after in zip(start, net.get_weights()):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("order", ["clipping first", "early stopping first"])
def test_the_optimizer_state_comes_back_under_a_clipping_wrapper(order):
    # Validation targets that get worse as training goes on: the best check is epoch 1,
    # whose optimizer had made 4 updates; restoring its state puts `iterations` back to 4.
    net = model(learning_rate=0.05, optimizer=keras.optimizers.Adam)
    stop = tk.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True,
                                      restore_optimizer_state=True)
    clipping = tk.callbacks.GradientClipping("global_norm", max_norm=100.0)
    callbacks = [clipping, stop] if order == "clipping first" else [stop, clipping]
    net.fit(X[:32], Y[:32], validation_data=(X[:8], -3 * Y[:8]), epochs=4, batch_size=8, verbose=0,
            callbacks=callbacks, shuffle=False)
    assert stop.best_epoch == 0
    assert int(net.optimizer.iterations) == 4


def _step_counts(steps_per_execution):
    stop = tk.callbacks.EarlyStopping(monitor="loss", check_every_n_steps=4, patience=100)
    monitor = tk.callbacks.TrainingMonitor(log_every_n_steps=4, gradient_norms=False, update_ratios=True)
    net = model(steps_per_execution, learning_rate=0.01)
    net.fit(X, Y, batch_size=4, epochs=2, verbose=0, shuffle=False, callbacks=[stop, monitor])
    return stop, monitor


def test_steps_are_counted_with_steps_per_execution():
    one_stop, one_monitor = _step_counts(1)
    four_stop, four_monitor = _step_counts(4)
    expected = list(range(4, 33, 4))  # 2 epochs of 16 steps
    assert [step for _, step, *_ in one_stop.history] == expected
    assert [step for _, step, *_ in four_stop.history] == expected
    assert [r["step"] for r in one_monitor.records] == expected
    assert [r["step"] for r in four_monitor.records] == expected
    assert one_monitor.step == four_monitor.step == 32
    # A call of 4 steps reports the mean loss of its 4 batches; one step at a time gives
    # each batch's loss (the same training: same data order, same updates).
    one_losses = [r["loss/batch"] for r in one_monitor.records]
    assert len(one_losses) == 8
    per_step = {}
    single = tk.callbacks.TrainingMonitor(log_every_n_steps=1, gradient_norms=False, update_ratios=False)
    model(1, learning_rate=0.01).fit(X, Y, batch_size=4, epochs=2, verbose=0, shuffle=False, callbacks=[single])
    for record in single.records:
        per_step[record["step"]] = record["loss/batch"]
    call_means = [np.mean([per_step[s] for s in range(end - 3, end + 1)]) for end in expected]
    np.testing.assert_allclose([r["loss/batch"] for r in four_monitor.records], call_means, rtol=1e-4)
    # Every record has its update ratio, the first call's too.
    assert all("update_ratio/global" in r for r in four_monitor.records)
