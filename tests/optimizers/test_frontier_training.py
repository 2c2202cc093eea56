"""ADOPT, AdEMAMix, MARS, Muon, SOAP and Cautious in use: model.fit and the Trainer on a CNN,
.keras save/load with N-D slots, sparse gradients, and SOAP under MirroredStrategy.

Sparse gradients: the kernel's gradient goes in as ``tf.IndexedSlices`` with a
repeated row (to be summed) and an absent row (zero); the run must equal the
dense run with that row's gradient zeroed (``reference_drivers.run_keras_sparse``).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit import optimizers
from keras_trainkit.training import Trainer
from tests.optimizers import reference_drivers as tr
from tests.optimizers import reference_problems as rp


def make(name):
    return {
        "ADOPT": lambda: optimizers.ADOPT(3e-3),
        "AdEMAMix": lambda: optimizers.AdEMAMix(3e-3, beta_3=0.999, warmup_steps=10),
        "MARS": lambda: optimizers.MARS(3e-3, weight_decay=0.01),
        "Muon": lambda: optimizers.Muon(0.02, adam_learning_rate=3e-3, consistent_rms=None),
        "SOAP": lambda: optimizers.SOAP(3e-3, max_block_size=16, precondition_frequency=3),
        "Cautious": lambda: optimizers.Cautious(keras.optimizers.Adam(3e-3), weight_decay=0.01),
    }[name]()


NAMES = ["ADOPT", "AdEMAMix", "MARS", "Muon", "SOAP", "Cautious"]


def digits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8, 8, 1)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype("int32")
    return x, y


def cnn():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.BatchNormalization(name="norm"),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv2"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, name="head"),
    ])


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.mark.parametrize("name", NAMES)
def test_fit_trains_a_cnn_and_resumes_after_load(name, tmp_path):
    x, y = digits()
    model = cnn()
    model.compile(optimizer=make(name), loss=LOSS)
    history = model.fit(x, y, batch_size=16, epochs=6, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is type(model.optimizer)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_trainer_trains_a_cnn(name):
    x, y = digits()
    trainer = Trainer(cnn(), make(name), LOSS, jit_compile=False, shuffle=False)
    history = trainer.fit(x, y, batch_size=16, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_muon_orthogonalizes_conv_kernels_and_leaves_the_rest_to_adamw():
    optimizer = optimizers.Muon(0.02)
    model = cnn()
    model.compile(optimizer=optimizer, loss=LOSS)
    model.fit(*digits(), batch_size=16, epochs=1, verbose=0)
    muon = {v.path.split("/", 1)[1] for v in model.trainable_variables if optimizer.uses_muon(v)}
    assert muon == {"conv/kernel", "conv2/kernel", "head/kernel"}
    velocities = [v for v in optimizer.variables if "velocity" in v.name]
    assert len(velocities) == len(model.trainable_variables) - len(muon)


SPARSE_CASES = {
    **{name: (lambda name=name: make(name)) for name in NAMES if name != "Cautious"},
    # Keras's own Adam squares each slice of a repeated row separately (so does
    # every Keras optimizer with a nonlinear term); SGD is linear in the gradient.
    "Cautious(SGD)": lambda: optimizers.Cautious(keras.optimizers.SGD(3e-3, momentum=0.9), weight_decay=0.01),
    "Cautious(ADOPT)": lambda: optimizers.Cautious(optimizers.ADOPT(3e-3)),
}


@pytest.mark.parametrize("name", sorted(SPARSE_CASES))
def test_sparse_gradients_equal_their_dense_form(name):
    problem = rp.quadratic(seed=7)
    sparse = tr.run_keras_sparse(SPARSE_CASES[name](), problem)
    dense = tr.run_keras_masked(SPARSE_CASES[name](), problem)
    rp.assert_moved(dense, problem)
    rp.assert_matches(sparse, dense, rtol=1e-6)


def test_soap_mirrored_matches_one_device_with_full_rank_statistics(two_cpu_strategy):
    """4 x 4 kernels and 4 outputs: every statistic is full rank from the first step, so the
    eigenvector bases are determined (see MIRRORED_SKIPPED in test_matrix.py)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(4, 4))).astype("float32")

    def model():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(4)])

    def run(strategy):
        with strategy.scope():
            net = model()
            net.compile(optimizer=optimizers.SOAP(1e-2, epsilon=1e-3, precondition_frequency=2), loss="mse")
        net.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=2, verbose=0)
        return net.get_weights()

    one_device = run(tf.distribute.get_strategy())
    mirrored = run(two_cpu_strategy)
    for a, b in zip(mirrored, one_device):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
