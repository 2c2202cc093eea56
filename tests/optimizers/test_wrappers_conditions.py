"""The optimizer wrappers under XLA, ``steps_per_execution``, ``MirroredStrategy`` and float16.

What the other wrapper tests leave out: every wrapper with ``jit_compile=True``
and several steps per execution against its plain ``fit``; Cautious, ScheduleFree
and a nested wrapper on two replicas against one device, and ``SAMModel`` on two
replicas against a numpy transcription of SAM with a per-replica perturbation
(the paper's m-sharpness, as documented), over the test session's two
logical CPUs; Cautious and ScheduleFree under
``mixed_float16``, whose loss scale must move exactly as with a plain Keras
Adam; and a ``LossScaleOptimizer`` placed *inside* a wrapper, which divided
every gradient by its 2**15 loss scale (training silently stalled) and is
now refused.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit import optimizers as O
from keras_trainkit.optimizers.transforms import ClipByGlobalNorm, SkipNonFinite
from tests.conftest import mirrored_two_cpus

WRAPPERS = {
    "OptimizerWrapper": lambda inner: O.OptimizerWrapper(inner),
    "TransformedOptimizer": lambda inner: O.TransformedOptimizer(inner, [SkipNonFinite(), ClipByGlobalNorm(0.5)]),
    "Lookahead": lambda inner: O.Lookahead(inner, sync_period=3),
    "Cautious": lambda inner: O.Cautious(inner, weight_decay=0.1),
    "LayerwiseLearningRate": lambda inner: O.LayerwiseLearningRate(inner, {"body/*": 0.3}),
    "ScheduleFree": lambda inner: O.ScheduleFree(inner),
    "SAM": lambda inner: O.SAM(inner, rho=0.05),
}


def _data(n=32):
    """A small regression problem and fixed initial weights (independent of any seed state)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1)) + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    w0 = [rng.normal(size=(4, 8)).astype("float32") * 0.5, np.zeros(8, "float32"),
          rng.normal(size=(8, 1)).astype("float32") * 0.5, np.zeros(1, "float32")]
    return x, y, w0


def _model(w0, sam=False):
    """``Dense(8, tanh) -> Dense(1)`` with the weights ``w0`` (``SAMModel`` around it for SAM)."""
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="tanh", name="body")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(hidden))
    model.set_weights(w0)
    return O.SAMModel(model) if sam else model


def _inner(name):
    """A momentum-free SGD for ScheduleFree, SGD with momentum otherwise."""
    return keras.optimizers.SGD(0.05, momentum=0.0 if name == "ScheduleFree" else 0.9)


def _fit(name, epochs=2, **compile_kwargs):
    x, y, w0 = _data()
    model = _model(w0, sam=name == "SAM")
    model.compile(optimizer=WRAPPERS[name](_inner(name)), loss="mse", **compile_kwargs)
    history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False)
    return model, history.history["loss"]


# ------------------------------------------------------------------------ XLA
@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_xla_with_several_steps_per_execution_matches_the_plain_fit(name):
    """8 updates, 3 per compiled call (the last call runs 2), under XLA: the plain fit's weights."""
    plain, _ = _fit(name)
    compiled, _ = _fit(name, jit_compile=True, steps_per_execution=3)
    assert int(keras.ops.convert_to_numpy(compiled.optimizer.iterations)) == 8
    for a, b in zip(plain.get_weights(), compiled.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------- LossScaleOptimizer
@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_a_loss_scale_optimizer_inside_a_wrapper_is_refused(name):
    inner = keras.optimizers.LossScaleOptimizer(_inner(name))
    with pytest.raises(ValueError, match=r"LossScaleOptimizer\(" + name + r"\(\.\.\.\)\).*"
                       r"Received: optimizer=LossScaleOptimizer\(SGD\)"):
        WRAPPERS[name](inner)


class _OtherWrapper(keras.optimizers.SGD):
    """A wrapper from elsewhere: it only holds an ``inner_optimizer`` (as Keras's own do)."""

    def __init__(self, inner):
        super().__init__(0.1)
        self.inner_optimizer = inner


def test_a_loss_scale_optimizer_two_wrappers_deep_is_refused():
    inner = _OtherWrapper(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)))
    with pytest.raises(ValueError, match=r"Received: optimizer=_OtherWrapper\(LossScaleOptimizer\(SGD\)\)"):
        O.Lookahead(inner)


def test_the_loss_scale_optimizer_outside_trains_as_the_wrapper_alone():
    """Outside (the supported order) a power-of-two scale is exact: the float32 run's weights.

    Before the refusal, the order the other way round moved the weights by about
    1e-5 where this run moves them by 0.5: every gradient divided by 2**15.
    """
    x, y, w0 = _data()
    runs = []
    for outside in (False, True):
        model = _model(w0)
        optimizer = O.Lookahead(keras.optimizers.SGD(0.05, momentum=0.9), sync_period=3)
        if outside:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**4)
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        runs.append(model.get_weights())
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(runs[0], w0)) > 0.1
    for a, b in zip(*runs):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- float16
class _ScaleRecorder(keras.callbacks.Callback):
    """The loss scale after every batch."""

    def __init__(self):
        super().__init__()
        self.scales = []

    def on_train_batch_end(self, batch, logs=None):
        self.scales.append(float(keras.ops.convert_to_numpy(self.model.optimizer.dynamic_scale)))


def _fit_mixed(make_optimizer):
    """``mixed_float16`` fit with a loss scale of 2**18 to start with: its first steps overflow."""
    x, y, w0 = _data()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = _model(w0)
        optimizer = keras.optimizers.LossScaleOptimizer(make_optimizer(), initial_scale=2.0**18)
        model.compile(optimizer=optimizer, loss="mse")
        recorder = _ScaleRecorder()
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[recorder])
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    return model, history.history["loss"], recorder.scales


@pytest.mark.parametrize("name", ["Cautious", "ScheduleFree"])
def test_mixed_float16_loss_scale_moves_as_with_a_plain_keras_adam(name):
    plain, _, plain_scales = _fit_mixed(lambda: keras.optimizers.Adam(0.01, beta_1=0.0))
    model, losses, scales = _fit_mixed(lambda: WRAPPERS[name](keras.optimizers.Adam(0.01, beta_1=0.0)))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert plain_scales[0] < 2.0**18, "the problem must overflow at the initial scale"
    assert scales == plain_scales
    count = keras.ops.convert_to_numpy
    assert 0 < int(count(model.optimizer.iterations)) == int(count(plain.optimizer.iterations)) < 8
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert losses[-1] < losses[0]
    wrapper = model.optimizer.inner_optimizer
    assert {v.dtype for v in wrapper.variables if len(v.shape)} == {"float32"}
    if name == "ScheduleFree":  # finalize_variable_values reached it through the LossScaleOptimizer
        assert wrapper.holds_evaluation_weights


# ----------------------------------------------------------- MirroredStrategy
def test_two_replicas_match_one_device():
    differences = _mirrored_differences()
    assert set(differences) == {"Cautious", "ScheduleFree", "Lookahead(Cautious)", "SAM"}
    for case, difference in differences.items():
        assert difference < 1e-6, (case, difference)


def _sam_reference(x, y, w0, steps, replicas, lr=0.05, momentum=0.9, rho=0.05, batch=16):
    """numpy SAM on the MLP: each replica perturbs with its own half-batch gradient (m-sharpness)."""
    def gradient(w, xb, yb):
        hidden = np.tanh(xb @ w[0] + w[1])
        error = 2.0 * (hidden @ w[2] + w[3] - yb) / len(xb)
        back = (error @ w[2].T) * (1.0 - hidden**2)
        return [xb.T @ back, back.sum(0), hidden.T @ error, error.sum(0)]

    w = [a.astype(np.float64) for a in w0]
    velocity = [np.zeros_like(a) for a in w]
    for step in range(steps):
        xb, yb = x[step * batch:(step + 1) * batch], y[step * batch:(step + 1) * batch]
        total = [np.zeros_like(a) for a in w]
        for xr, yr in zip(np.split(xb, replicas), np.split(yb, replicas)):
            g = gradient(w, xr, yr)
            norm = np.sqrt(sum(np.sum(gi**2) for gi in g))
            perturbed = gradient([a + rho * gi / (norm + 1e-12) for a, gi in zip(w, g)], xr, yr)
            total = [t + p / replicas for t, p in zip(total, perturbed)]
        velocity = [momentum * v - lr * t for v, t in zip(velocity, total)]
        w = [a + v for a, v in zip(w, velocity)]
    return w


def _mirrored_differences():
    """Max weight difference, two replicas against one device (SAM: against ``_sam_reference``)."""

    x, y, w0 = _data()
    cases = {
        "Cautious": (lambda: O.Cautious(keras.optimizers.Adam(0.01), weight_decay=0.1), 1, 1),
        "ScheduleFree": (lambda: O.ScheduleFree(keras.optimizers.AdamW(0.01, beta_1=0.0)), 1, 2),
        "Lookahead(Cautious)": (lambda: O.Lookahead(O.Cautious(keras.optimizers.Adam(0.01)), sync_period=3), 2, 1),
    }
    out = {}
    for case, (make, steps, fits) in cases.items():
        runs = []
        for strategy in (tf.distribute.get_strategy(), mirrored_two_cpus()):
            with strategy.scope():
                model = _model(w0)
                model.compile(optimizer=make(), loss="mse", steps_per_execution=steps)
            for _ in range(fits):  # a second fit starts from ScheduleFree's x and puts y back in-graph
                model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
            runs.append(model.get_weights())
        out[case] = max(float(np.max(np.abs(a - b))) for a, b in zip(*runs))
    with mirrored_two_cpus().scope():
        model = _model(w0, sam=True)
        model.compile(optimizer=O.SAM(keras.optimizers.SGD(0.05, momentum=0.9), rho=0.05), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    reference = _sam_reference(x, y, w0, steps=2, replicas=2)
    out["SAM"] = max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), reference))
    return out
