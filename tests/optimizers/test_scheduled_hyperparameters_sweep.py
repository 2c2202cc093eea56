"""Float hyperparameters scheduled at run time (``control.schedule_hyperparameter``) in every variable dtype.

``HyperparameterScheduler`` promises that any float hyperparameter of our
optimizers may be scheduled: the attribute becomes a float32 scalar variable
that a compiled step reads at every update. Each case below runs the optimizer
twice on a small noisy quadratic (a ``(4, 3)`` kernel and a ``(3,)`` bias):

* the reference, eagerly, one ``optimizer.apply`` at a time, with the plain
  Python float attribute set to its new value before update ``K``;
* the run under test, a fresh optimizer whose attribute is the scheduled
  variable, all updates in one ``tf.function`` loop (traced once, as
  ``model.fit`` does), the variable assigned its new value before update ``K``.

Both start from float32-representable values, so they must agree to round-off.
Before the fix, every update that formed ``(g - m) * (1.0 - beta)`` with a
scheduled ``beta`` crashed on float64 variables (a float32 tensor times a
float64 one: ``TypeError`` in TensorFlow); RAdam's ``warmup_proportion``
could not be traced in any dtype (Python ``max`` of a tensor); Muon with
float16 variables and weight decay crashed even with a plain float (the decay
multiplied the float32 direction by the float16 weights).
"""

import keras
import numpy as np
import pytest

import keras_trainkit.optimizers as optimizers
from keras_trainkit.optimizers.control import schedule_hyperparameter

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function loop")

STEPS, K = 20, 8
NAMES = ("kernel", "bias")
_RNG = np.random.default_rng(0)
START = {"kernel": _RNG.normal(size=(4, 3)), "bias": _RNG.normal(size=(3,))}
TARGET = {name: _RNG.normal(size=value.shape) for name, value in START.items()}
NOISE = np.stack([np.concatenate([0.5 * _RNG.normal(size=START[n].size) for n in NAMES]) for _ in range(STEPS)])
TOLERANCE = {"float32": 2e-5, "float64": 2e-5, "float16": 5e-3}  # of the largest displacement

SHAMPOO = dict(max_block_size=4, start_preconditioning_step=2, preconditioning_compute_steps=3)
# (optimizer, constructor arguments, hyperparameter, value at construction, value from update K on, dtypes)
CASES = [
    ("AdaBelief", {}, "beta_1", 0.9, 0.6, ("float64",)),
    ("AdaBelief", {}, "beta_2", 0.999, 0.9, ("float64",)),
    ("Adan", {}, "beta_2", 0.92, 0.6, ("float64",)),
    ("Adan", {}, "beta_3", 0.99, 0.8, ("float64",)),
    ("NovoGrad", {}, "beta_2", 0.98, 0.7, ("float64",)),
    ("Yogi", {}, "beta_1", 0.9, 0.6, ("float64",)),
    ("ADOPT", {}, "beta_1", 0.9, 0.6, ("float64",)),
    ("Prodigy", {"learning_rate": 1.0, "d0": 1e-2}, "beta_2", 0.999, 0.9, ("float64",)),
    ("RAdam", {}, "beta_1", 0.9, 0.6, ("float64",)),
    ("RAdam", {}, "sma_threshold", 5.0, 15.0, ("float64",)),
    ("RAdam", {"total_steps": 30}, "warmup_proportion", 0.1, 0.5, ("float32", "float64")),
    ("Shampoo", SHAMPOO, "beta_1", 0.9, 0.6, ("float64",)),
    ("Shampoo", SHAMPOO, "graft_beta_2", 0.999, 0.9, ("float64",)),
    ("AdEMAMix", {}, "beta_2", 0.999, 0.9, ("float64",)),
    ("MARS", {}, "gamma", 0.025, 0.5, ("float64",)),
    ("MARS", {}, "adam_beta_2", 0.95, 0.7, ("float64",)),
    ("Muon", {}, "beta", 0.95, 0.6, ("float64",)),
    ("Muon", {}, "adam_beta_1", 0.9, 0.6, ("float64",)),
    ("Muon", {}, "consistent_rms", 0.2, 0.5, ("float64",)),
    ("Muon", {}, "weight_decay", 0.01, 0.2, ("float16",)),
    ("Muon", {}, "adam_weight_decay", 0.01, 0.2, ("float16",)),
    ("SOAP", {"precondition_frequency": 3}, "beta_1", 0.95, 0.6, ("float64",)),
    ("SOAP", {"precondition_frequency": 3}, "shampoo_beta", 0.9, 0.6, ("float64",)),
]
PARAMETERS = [
    pytest.param(name, arguments, attribute, start, new, dtype, id=f"{name}-{attribute}-{dtype}")
    for name, arguments, attribute, start, new, dtypes in CASES
    for dtype in dtypes
]


def _f32(value):
    return float(np.float32(value))


def _make(name, arguments, attribute, start):
    arguments = {"learning_rate": 0.05, **arguments, attribute: _f32(start)}
    return getattr(optimizers, name)(**arguments)


def _variables(dtype):
    return [keras.Variable(START[n].astype(dtype), dtype=dtype, name=n) for n in NAMES]


def _gradients(variables, noise):
    row = keras.ops.cast(noise, variables[0].dtype)
    parts = [keras.ops.reshape(row[:12], (4, 3)), row[12:]]
    return [v.value - keras.ops.cast(TARGET[n], v.dtype) + p for v, n, p in zip(variables, NAMES, parts)]


def _weights(variables):
    return np.concatenate([keras.ops.convert_to_numpy(v).astype(np.float64).ravel() for v in variables])


def run_eager(optimizer, attribute, new, dtype):
    """The reference: one eager ``apply`` at a time, the Python float set to ``new`` before update ``K``."""
    variables = _variables(dtype)
    optimizer.build(variables)
    for t in range(STEPS):
        if t == K and new is not None:
            setattr(optimizer, attribute, _f32(new))
        optimizer.apply(_gradients(variables, NOISE[t]), variables)
    return _weights(variables)


def run_scheduled(optimizer, attribute, new, dtype, jit_compile=False):
    """All updates in one ``tf.function`` loop, the scheduled variable assigned ``new`` before update ``K``."""
    import tensorflow as tf

    variables = _variables(dtype)
    optimizer.build(variables)
    handle = schedule_hyperparameter(optimizer, attribute)
    before, after = tf.constant(handle.host_value, "float32"), tf.constant(_f32(new), "float32")
    noise = tf.constant(NOISE)

    @tf.function(jit_compile=jit_compile)
    def run():
        for t in tf.range(STEPS):
            handle.assign(tf.where(t >= K, after, before))
            optimizer.apply(_gradients(variables, noise[t]), variables)

    run()
    return _weights(variables)


@pytest.mark.parametrize("name, arguments, attribute, start, new, dtype", PARAMETERS)
def test_scheduled_hyperparameter_matches_the_eager_float(name, arguments, attribute, start, new, dtype):
    reference = run_eager(_make(name, arguments, attribute, start), attribute, new, dtype)
    constant = run_eager(_make(name, arguments, attribute, start), attribute, None, dtype)
    displacement = np.max(np.abs(reference - _weights(_variables(dtype))))
    tolerance = TOLERANCE[dtype] * displacement
    assert np.max(np.abs(reference - constant)) > 10 * tolerance  # the change matters
    ours = run_scheduled(_make(name, arguments, attribute, start), attribute, new, dtype)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=tolerance)


def test_scheduled_warmup_proportion_under_xla():
    arguments = {"total_steps": 30}
    reference = run_eager(_make("RAdam", arguments, "warmup_proportion", 0.1), "warmup_proportion", 0.5, "float32")
    ours = run_scheduled(_make("RAdam", arguments, "warmup_proportion", 0.1), "warmup_proportion", 0.5, "float32",
                         jit_compile=True)
    tolerance = TOLERANCE["float32"] * np.max(np.abs(reference - _weights(_variables("float32"))))
    np.testing.assert_allclose(ours, reference, rtol=0, atol=tolerance)


def test_cautious_weight_decay_is_what_scheduling_weight_decay_changes():
    """``Cautious``'s config key ``weight_decay`` is its own unmasked decay: scheduling the name
    changes it (before, it set the Keras base optimizer's unused attribute: no effect at all)."""
    import tensorflow as tf

    grads = np.random.default_rng(3).normal(size=(6, 3)).astype("float32")

    def run(optimizer, switch=None):
        w = keras.Variable(np.ones(3, "float32"), name="kernel")
        step = tf.function(lambda g: optimizer.apply([g], [w]))
        for t, g in enumerate(grads):
            if switch is not None and t == 3:
                switch()
            step(tf.constant(g))
        return w.numpy()

    reference = optimizers.Cautious(keras.optimizers.SGD(0.1), weight_decay=0.5)
    w_ref = keras.Variable(np.ones(3, "float32"), name="kernel")
    for t, g in enumerate(grads):  # eager, the plain float changed at step 3
        if t == 3:
            reference.cautious_weight_decay = 0.0
        reference.apply([g], [w_ref])
    scheduled = optimizers.Cautious(keras.optimizers.SGD(0.1), weight_decay=0.5)
    variable = schedule_hyperparameter(scheduled, "weight_decay")
    np.testing.assert_allclose(run(scheduled, switch=lambda: variable.assign(0.0)), w_ref.numpy(), rtol=1e-6)
    assert not np.allclose(w_ref.numpy(), run(optimizers.Cautious(keras.optimizers.SGD(0.1), weight_decay=0.5)))


@pytest.mark.parametrize("start", [1.0, 0.5])
def test_scheduled_layerwise_default_matches_the_eager_float(start):
    """``LayerwiseLearningRate.default`` scheduled: the bias (no pattern) follows the new factor.

    Before the fix a traced step crashed (autograph turned ``float(default)`` into a
    tensor and the ``factor != 1.0`` test into a ``tf.cond`` whose values left its
    branch); starting from ``default=1.0`` the factor must still be applied later.
    """

    def make():
        return optimizers.LayerwiseLearningRate(keras.optimizers.Adam(0.05), {"kernel": 0.3}, default=start)

    reference = run_eager(make(), "default", 0.2, "float32")
    constant = run_eager(make(), "default", None, "float32")
    tolerance = TOLERANCE["float32"] * np.max(np.abs(reference - _weights(_variables("float32"))))
    assert np.max(np.abs(reference[12:] - constant[12:])) > 10 * tolerance  # the bias moved differently
    np.testing.assert_array_equal(reference[:12], constant[:12])  # the kernel kept its own factor
    ours = run_scheduled(make(), "default", 0.2, "float32")
    np.testing.assert_allclose(ours, reference, rtol=0, atol=tolerance)
