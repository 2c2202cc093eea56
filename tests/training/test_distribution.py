"""MirroredStrategy over the two logical CPU devices gives the weights of one device."""

import keras
import numpy as np
import tensorflow as tf

from keras_trainkit.training import Trainer


def train(strategy, k=1):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.integers(0, 3, size=64)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
                                  keras.layers.Dense(3)])
        trainer = Trainer(model, keras.optimizers.Adam(0.05),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          ["accuracy"], shuffle=False, strategy=strategy,
                          gradient_accumulation_steps=k, steps_per_execution=2)
    history = trainer.fit(x, y, batch_size=16, epochs=2, verbose=0)
    return model.get_weights(), history.history, trainer


def test_mirrored_two_cpus_equals_one_device(two_cpu_strategy):
    one, one_logs, _ = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
    two, two_logs, trainer = train(two_cpu_strategy)
    assert trainer.strategy.num_replicas_in_sync == 2
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(one_logs["loss"], two_logs["loss"], rtol=1e-5)
    np.testing.assert_allclose(one_logs["accuracy"], two_logs["accuracy"], rtol=1e-6)


def test_mirrored_with_gradient_accumulation(two_cpu_strategy):
    one, _, _ = train(tf.distribute.OneDeviceStrategy("/cpu:0"), k=2)
    two, _, trainer = train(two_cpu_strategy, k=2)
    assert int(trainer.optimizer.iterations.numpy()) == 4
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_two_processes_end_with_identical_weights(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = root / "tests" / "training" / "_multiworker_script.py"
    ports = [str(p) for p in _free_ports(2)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    procs = [subprocess.Popen([sys.executable, str(script), *ports, str(i), str(tmp_path / f"w{i}.npz")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
        assert "done 2" in out
    weights = [np.load(tmp_path / f"w{i}.npz") for i in range(2)]
    keras.utils.set_random_seed(0)
    initial = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
                                keras.layers.Dense(3)]).get_weights()
    for i, start in enumerate(initial):
        np.testing.assert_array_equal(weights[0][f"arr_{i}"], weights[1][f"arr_{i}"])
        assert not np.allclose(weights[0][f"arr_{i}"], start)  # both trained, in sync
