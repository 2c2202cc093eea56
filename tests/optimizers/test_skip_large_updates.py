"""``SkipLargeUpdates`` against optax (absolute rule) and a numpy transcription (relative rule).

Each side runs its own trajectory of 160 steps of SGD with momentum 0.9 on a noisy
quadratic ``g = x - target + noise_t * scale_t`` whose noise has spikes (``scale_t``
= 100 at a few steps) and, for the relative rule, a lasting jump (x20 from step 130)
that ``max_consecutive`` must let through. Ours is ``TransformedOptimizer(SGD, [skip])``
on ``keras.Variable`` s; the reference is optax's ``MultiSteps(sgd,
should_skip_update_fn=skip_large_updates)`` (every_k_schedule=1, so a step is skipped
or applied whole) or a numpy transcription of the docstring's rule. Gradients are
dense, or ``tf.IndexedSlices`` with repeated and absent rows (the reference sums the
slices into rows first); variables are float32 or float16.
"""

import functools
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_trainkit.optimizers import SkipLargeUpdates, TransformedOptimizer, transforms  # noqa: E402

STEPS = 160
ROWS, COLS = 6, 3
LR, MOMENTUM = 0.05, 0.9
SPIKES = (40, 41, 77, 110)
# Sparse gradients: rows 1 and 4 repeated, rows 0 and 5 absent.
INDICES = np.array([1, 2, 1, 3, 4, 4])


def _problem(jump=False):
    rng = np.random.default_rng(0)
    target = rng.normal(size=(ROWS, COLS))
    noise = rng.normal(size=(STEPS, ROWS, COLS))
    scale = np.ones(STEPS)
    scale[list(SPIKES)] = 100.0
    if jump:
        scale[130:] *= 20.0
    return target, noise * scale[:, None, None], rng.normal(size=(ROWS, COLS))


def _dense_grad(x, target, noise_t):
    return x - target + noise_t


def _slices(dense):
    """IndexedSlices whose rows sum to ``dense`` on the listed rows (repeated rows split in half)."""
    counts = np.bincount(INDICES, minlength=ROWS)
    return dense[INDICES] / counts[INDICES, None]


def _reference_grad(x, target, noise_t, sparse, dtype):
    """The gradient as our side receives it, rounded to ``dtype``; sparse slices rounded, then summed per row."""
    dense = _dense_grad(x, target, noise_t)
    if not sparse:
        return dense.astype(dtype).astype("float64")
    out = np.zeros_like(dense)
    np.add.at(out, INDICES, _slices(dense).astype(dtype).astype("float64"))
    return out


def _run_ours(skip, problem, sparse, dtype):
    target, noise, x0 = problem
    variable = keras.Variable(x0.astype(dtype), dtype=dtype, name="embedding")
    optimizer = TransformedOptimizer(keras.optimizers.SGD(LR, momentum=MOMENTUM), [skip])
    optimizer.build([variable])

    @tf.function
    def step(grad):
        optimizer.apply([grad], [variable])

    @tf.function
    def sparse_step(values):
        optimizer.apply([tf.IndexedSlices(values, tf.constant(INDICES), tf.constant([ROWS, COLS]))], [variable])

    path, decisions = [], []
    for t in range(STEPS):
        x = np.asarray(variable.numpy(), "float64")
        dense = _dense_grad(x, target, noise[t])
        if sparse:
            sparse_step(tf.constant(_slices(dense).astype(dtype)))
        else:
            step(tf.constant(dense.astype(dtype)))
        decisions.append(int(skip.consecutive_skips.numpy()) == 0)
        path.append(np.asarray(variable.numpy(), "float64"))
    return np.array(path), decisions


def _numpy_sgd(should_apply, problem, sparse, dtype):
    """SGD with momentum (Keras's form, ``v <- m v - lr g``; ``x <- x + v``) where ``should_apply(g)`` holds."""
    target, noise, x0 = problem
    x = x0.astype(dtype).astype("float64")
    velocity = np.zeros_like(x)
    path, decisions = [], []
    for t in range(STEPS):
        grad = _reference_grad(x, target, noise[t], sparse, dtype)
        applied = should_apply(grad)
        if applied:
            velocity = MOMENTUM * velocity - LR * grad
            x = (x + velocity).astype(dtype).astype("float64")
        decisions.append(applied)
        path.append(x)
    return np.array(path), decisions


def _relative_rule(threshold, beta, warmup_steps, max_consecutive):
    """The docstring's rule, transcribed: a closure ``should_apply(grad)`` with its own running statistics."""
    state = {"n": 0, "mean": 0.0, "var": 0.0, "run": 0}

    def should_apply(grad):
        norm = float(np.sqrt(np.sum(grad.astype("float32").astype("float64") ** 2)))
        limit = state["mean"] + threshold * np.sqrt(state["var"])
        holds = state["n"] < warmup_steps or norm <= limit or state["run"] >= max_consecutive
        applied = bool(np.isfinite(norm) and holds)
        if applied:
            if state["n"] == 0:
                state["mean"], state["var"] = norm, 0.0
            else:
                delta = norm - state["mean"]
                state["mean"] += (1 - beta) * delta
                state["var"] = beta * (state["var"] + (1 - beta) * delta**2)
            state["n"] += 1
            state["run"] = 0
        else:
            state["run"] += 1
        return applied

    return should_apply


def _assert_same(ours, reference, dtype):
    (our_path, our_decisions), (ref_path, ref_decisions) = ours, reference
    assert our_decisions == ref_decisions
    assert 0 < our_decisions.count(False) < STEPS // 4, "the test must skip some steps, not most"
    tolerance = {"float32": dict(rtol=1e-5, atol=1e-5), "float16": dict(rtol=2e-2, atol=2e-2)}[dtype]
    np.testing.assert_allclose(our_path, ref_path, **tolerance)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_absolute_rule_matches_optax_multisteps(sparse, dtype):
    optax = pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp

    max_norm = 30.0
    problem = _problem()
    ours = _run_ours(SkipLargeUpdates(threshold=None, max_norm=max_norm), problem, sparse, dtype)

    skip_fn = functools.partial(optax.skip_large_updates, max_squared_norm=max_norm**2)
    reference = optax.MultiSteps(optax.sgd(LR, momentum=MOMENTUM), every_k_schedule=1,
                                 should_skip_update_fn=skip_fn)
    target, noise, x0 = problem
    params = jnp.asarray(x0.astype(dtype).astype("float32"))
    state = reference.init(params)
    update = jax.jit(reference.update)
    path, decisions = [], []
    for t in range(STEPS):
        x = np.asarray(params, "float64")
        grad = jnp.asarray(_reference_grad(x, target, noise[t], sparse, dtype).astype("float32"))
        updates, state = update(grad, state, params)
        decisions.append(not bool(state.skip_state["should_skip"]))
        params = jnp.asarray((np.asarray(params) + np.asarray(updates)).astype(dtype).astype("float32"))
        path.append(np.asarray(params, "float64"))
    _assert_same(ours, (np.array(path), decisions), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_relative_rule_matches_numpy_transcription(sparse, dtype):
    args = dict(threshold=4.0, beta=0.95, warmup_steps=20, max_consecutive=5)
    problem = _problem(jump=True)
    ours = _run_ours(SkipLargeUpdates(**args), problem, sparse, dtype)
    reference = _numpy_sgd(_relative_rule(**args), problem, sparse, dtype)
    _assert_same(ours, reference, dtype)
    decisions = ours[1]
    assert not any(decisions[s] for s in SPIKES), "a spike went through"
    assert not decisions[130] and decisions[135], "max_consecutive=5 did not let the 6th step through"
    assert all(decisions[145:]), "the lasting jump was still skipped 15 steps later"


def test_warmup_applies_everything_and_nan_is_always_skipped():
    skip = SkipLargeUpdates(threshold=1.0, warmup_steps=3, max_consecutive=None)
    w = keras.Variable([0.0, 0.0])
    chain = transforms.GradientChain([skip])
    applied = []
    for g in ([1.0, 0.0], [100.0, 0.0], [float("nan"), 0.0], [0.5, 0.0], [1000.0, 0.0], [1000.0, 0.0]):
        chain.apply([keras.ops.convert_to_tensor(g)], [w], lambda grads: applied.append(True))
    stats = skip.get_statistics()
    # Steps 1, 2, 4 applied (warm-up), NaN skipped, then 1000 is > mean + 1 std: skipped twice.
    assert stats["applied_steps"] == 3 and stats["skipped_steps"] == 3 and stats["consecutive_skips"] == 2
    norms = np.array([1.0, 100.0, 0.5])
    mean, var = norms[0], 0.0
    for n in norms[1:]:
        delta = n - mean
        mean += 0.01 * delta
        var = 0.99 * (var + 0.01 * delta**2)
    assert stats["norm_mean"] == pytest.approx(mean, rel=1e-6)
    assert stats["norm_variance"] == pytest.approx(var, rel=1e-5)
    assert stats["grad_norm"] == 1000.0


def test_config_round_trip_and_lookup():
    skip = SkipLargeUpdates(threshold=3.0, max_norm=10.0, beta=0.9, warmup_steps=5, max_consecutive=None, name="s")
    again = SkipLargeUpdates.from_config(skip.get_config())
    assert again.get_config() == skip.get_config()
    assert type(transforms.get("skip_large_updates", max_norm=1.0)) is SkipLargeUpdates


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"threshold": 0.0}, ValueError, r"Argument `threshold` must be > 0. Received: threshold=0.0"),
        ({"threshold": "big"}, TypeError, r"Argument `threshold` must be a real number"),
        ({"max_norm": -1.0}, ValueError, r"Argument `max_norm` must be > 0. Received: max_norm=-1.0"),
        ({"threshold": None}, ValueError, r"Argument `threshold` must be set when `max_norm` is None.*"
                                          r"Received: threshold=None"),
        ({"beta": 1.0}, ValueError, r"Argument `beta` must be < 1.0. Received: beta=1.0"),
        ({"warmup_steps": 0}, ValueError, r"Argument `warmup_steps` must be >= 1. Received: warmup_steps=0"),
        ({"warmup_steps": 2.5}, TypeError, r"Argument `warmup_steps` must be an integer"),
        ({"max_consecutive": 0}, ValueError, r"Argument `max_consecutive` must be >= 1"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SkipLargeUpdates(**kwargs)


def test_a_sparse_gradient_is_measured_by_its_dense_rows():
    """Slices ``+10`` and ``-10`` of one row cancel: the dense gradient is zero, so the step is applied."""
    w = keras.Variable(np.zeros((3, 1), "float32"))
    skip = SkipLargeUpdates(threshold=None, max_norm=1.0)
    grad = tf.IndexedSlices(tf.constant([[10.0], [-10.0], [0.5]]), tf.constant([1, 1, 2]), tf.constant([3, 1]))
    decision = skip.decide([grad], [w])
    assert bool(decision)
    assert float(skip.grad_norm.numpy()) == pytest.approx(0.5)
