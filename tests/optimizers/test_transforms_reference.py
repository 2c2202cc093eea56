"""Each gradient transform against an independent reference over 100 steps.

Problems: a random ill-conditioned quadratic (condition number 1e3) and the
generalized Rosenbrock function, on parameters shaped like a Dense layer
(kernel ``(5, 4)``, bias ``(4,)``). Each side runs its own trajectory: ours is
``TransformedOptimizer(SGD(lr), [transform])`` on ``keras.Variable`` s, the
reference is ``optax.chain(<optax transform>, optax.sgd(lr))`` in float32 JAX
(or a numpy transcription of the paper for AutoClip); both compute gradients
with the same numpy function of their own parameters. Parameters must agree
to float32 relative error 1e-5 at every step.

Epsilon placement, AGC: ``max_i = clipping * max(||W_i||, eps)`` and
``G_i * max_i / max(||G_i||, 1e-6)``, exactly optax's ``adaptive_grad_clip``
(eps outside the norm, a separate 1e-6 division guard). Unit-wise axes: ours
take the norm over all but the last axis (Keras kernels are ``(..., units)``)
and over the whole tensor for rank <= 1; optax's defaults agree for rank 1, 2
and 4, which is what these problems use (rank 3 is checked in test_transforms).
GradientCentralization: the paper and ours centre each output unit (last axis
in Keras); optax.centralize centres over axes 1.. (output axis first, the
PyTorch layout), so the reference is applied to the transposed kernel.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_trainkit.optimizers import (  # noqa: E402
    AdaptiveGradientClipping,
    AutoClip,
    ClipByGlobalNorm,
    ClipByValue,
    GradientCentralization,
    TransformedOptimizer,
)

STEPS = 100
SHAPES = {"kernel": (5, 4), "bias": (4,)}
SIZE = 24


def _split(flat):
    return {"kernel": flat[:20].reshape(5, 4), "bias": flat[20:]}


def _flat(tree):
    return np.concatenate([np.asarray(tree["kernel"]).ravel(), np.asarray(tree["bias"]).ravel()])


def _noisy(grad, rng, scale):
    """A stochastic gradient: the exact one plus a fixed, step-indexed perturbation (same for both sides)."""
    noise = rng.normal(size=(STEPS, SIZE)) * scale

    def noisy(step, x):
        return grad(x) + noise[step]

    return noisy


def _quadratic(seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(SIZE, SIZE)))
    a = (q * np.logspace(0, 3, SIZE)) @ q.T
    b = rng.normal(size=SIZE)

    def grad(flat):
        return a @ flat - b

    return _noisy(grad, rng, 20.0), rng.normal(size=SIZE), 1e-3


def _rosenbrock(seed=1):
    rng = np.random.default_rng(seed)

    def grad(x):
        g = np.zeros_like(x)
        g[:-1] += -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
        g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
        return g

    return _noisy(grad, rng, 50.0), rng.uniform(-1.5, 1.5, size=SIZE), 2e-4


PROBLEMS = {"quadratic": _quadratic, "rosenbrock": _rosenbrock}


def _run_ours(transform, problem):
    grad_fn, x0, lr = PROBLEMS[problem]()
    init = _split(x0.astype("float32"))
    variables = [keras.Variable(init["kernel"], name="kernel"), keras.Variable(init["bias"], name="bias")]
    opt = TransformedOptimizer(keras.optimizers.SGD(lr), [transform])
    opt.build(variables)
    step_fn = lambda gk, gb: opt.apply([gk, gb], variables)  # noqa: E731 - eager on JAX and PyTorch
    if keras.backend.backend() == "tensorflow":
        step_fn = tf.function(step_fn)
    path, stats = [], []
    for step in range(STEPS):
        flat = _flat({"kernel": variables[0].numpy(), "bias": variables[1].numpy()})
        g = _split(grad_fn(step, flat.astype("float64")).astype("float32"))
        step_fn(keras.ops.convert_to_tensor(g["kernel"]), keras.ops.convert_to_tensor(g["bias"]))
        path.append(_flat({"kernel": variables[0].numpy(), "bias": variables[1].numpy()}))
        stats.append(transform.get_statistics())
    return np.array(path), stats


def _run_reference(update_fn, problem):
    """``update_fn(grads, params, state) -> (transformed grads, state)`` on numpy/JAX trees."""
    grad_fn, x0, lr = PROBLEMS[problem]()
    params = _split(x0.astype("float32"))
    state = None
    path = []
    for step in range(STEPS):
        g = _split(grad_fn(step, _flat(params).astype("float64")).astype("float32"))
        updates, state = update_fn(g, params, state)
        params = {k: np.asarray(params[k] - np.float32(lr) * np.asarray(updates[k], "float32")) for k in params}
        path.append(_flat(params))
    return np.array(path)


def _optax_update(transformation):
    jitted = jax.jit(transformation.update)

    def update(grads, params, state):
        jgrads = jax.tree.map(jnp.asarray, grads)
        jparams = jax.tree.map(jnp.asarray, params)
        if state is None:
            state = transformation.init(jparams)
        updates, state = jitted(jgrads, state, jparams)
        return jax.tree.map(np.asarray, updates), state

    return update


def _assert_paths_close(ours, reference):
    assert ours.shape == reference.shape == (STEPS, SIZE)
    assert np.all(np.isfinite(ours))
    for step in range(STEPS):
        np.testing.assert_allclose(ours[step], reference[step], rtol=1e-5, atol=1e-6, err_msg=f"step {step}")


def _clipped_some_but_not_all(stats):
    fractions = np.array([s["clip_fraction"] for s in stats])
    assert fractions.max() > 0.0, "the test never clipped"
    assert fractions.min() < 1.0, "the test clipped every step"


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_clip_by_global_norm_matches_optax(problem):
    max_norm = {"quadratic": 200.0, "rosenbrock": 1500.0}[problem]
    ours, stats = _run_ours(ClipByGlobalNorm(max_norm), problem)
    reference = _run_reference(_optax_update(optax.clip_by_global_norm(max_norm)), problem)
    _assert_paths_close(ours, reference)
    _clipped_some_but_not_all(stats)


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_clip_by_value_matches_optax(problem):
    bound = {"quadratic": 20.0, "rosenbrock": 100.0}[problem]
    ours, stats = _run_ours(ClipByValue(bound), problem)
    reference = _run_reference(_optax_update(optax.clip(bound)), problem)
    _assert_paths_close(ours, reference)
    _clipped_some_but_not_all(stats)


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_adaptive_gradient_clipping_matches_optax(problem):
    clipping = {"quadratic": 80.0, "rosenbrock": 300.0}[problem]
    ours, stats = _run_ours(AdaptiveGradientClipping(clipping, eps=1e-3), problem)
    reference = _run_reference(_optax_update(optax.adaptive_grad_clip(clipping, eps=1e-3)), problem)
    _assert_paths_close(ours, reference)
    _clipped_some_but_not_all(stats)


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_gradient_centralization_matches_optax_on_transposed_kernels(problem):
    centralize = optax.centralize()

    def update(grads, params, state):
        transposed = {"kernel": grads["kernel"].T, "bias": grads["bias"]}
        updates, state = _optax_update(centralize)(transposed, params, state)
        return {"kernel": np.asarray(updates["kernel"]).T, "bias": updates["bias"]}, state

    ours, _ = _run_ours(GradientCentralization(), problem)
    reference = _run_reference(update, problem)
    _assert_paths_close(ours, reference)


def _numpy_autoclip(percentile, history_size):
    """Seetharaman et al. 2020, Algorithm 1, with the history limited to the last `history_size` norms."""

    def update(grads, params, state):
        history = [] if state is None else state
        leaves = [np.asarray(grads["kernel"], "float64"), np.asarray(grads["bias"], "float64")]
        norm = np.sqrt(sum(np.sum(leaf**2) for leaf in leaves))
        history = (history + [norm])[-history_size:]
        threshold = np.percentile(history, percentile)  # linear interpolation
        scale = threshold / norm if norm > threshold else 1.0
        return {k: np.asarray(grads[k], "float64") * scale for k in grads}, history

    return update


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("history_size", [1000, 16])
def test_autoclip_matches_numpy_transcription(problem, history_size):
    ours, stats = _run_ours(AutoClip(25.0, history_size=history_size), problem)
    reference = _run_reference(_numpy_autoclip(25.0, history_size), problem)
    _assert_paths_close(ours, reference)
    _clipped_some_but_not_all(stats)
