"""ScheduleFree against ``optax.contrib.schedule_free`` and a numpy transcription of the paper.

Over 100 steps on the two reference problems, both the train weights ``y`` (the
model's weights) and the evaluation weights ``x`` (``evaluation_weights()`` vs
``optax.contrib.schedule_free_eval_params``), with SGD and with Adam
``beta_1=0`` as the base optimizer; dense and sparse (``tf.IndexedSlices``)
gradients; float32 and float16 variables.

Conventions pinned here (see ``ScheduleFree``'s docstring):

* the learning rate in the averaging weight is the one the inner optimizer
  uses for that update (schedule at its ``iterations``, from 0); optax
  evaluates it at its own count from 1, so the reference gets the schedule
  shifted by one step, and the unshifted reference differs measurably;
* the inner step is computed at ``y``: AdamW's weight decay at ``y`` equals
  ``optax.contrib.schedule_free_adamw``;
* Keras's Adam puts epsilon outside ``sqrt(v)`` before bias correction (optax
  after), so the Adam comparisons use ``epsilon=1e-12`` on both sides;
* Keras's Adam squares each slice of a ``tf.IndexedSlices`` before repeated
  rows are summed (its second moment then differs from optax's on the summed
  gradient: Keras's sparse convention, not ScheduleFree's), so sparse Adam is
  checked with distinct rows and sparse SGD with repeated and absent rows.
"""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest
import tensorflow as tf

from keras_trainkit.optimizers import ScheduleFree, SkipNonFinite, TransformedOptimizer
from keras_trainkit.schedules import Warmup
from tests.optimizers import reference_problems as rp

STEPS = 100
SETTINGS = {  # base optimizer -> learning rate per problem
    "sgd": {"quadratic": 0.01, "rosenbrock": 1e-4},
    "adam": {"quadratic": 0.01, "rosenbrock": 0.01},
}


def _keras_inner(kind, lr, epsilon=1e-12):
    return keras.optimizers.SGD(lr) if kind == "sgd" else keras.optimizers.Adam(lr, beta_1=0.0, epsilon=epsilon)


def _optax_inner(kind, lr, epsilon=1e-12):
    return optax.sgd(lr) if kind == "sgd" else optax.adam(lr, b1=0.0, eps=epsilon)


def run_ours(optimizer, problem, steps=STEPS):
    """``(y, x)`` trajectories: the model's weights and ``evaluation_weights()`` after each step."""
    init = problem.init
    variables = [keras.Variable(init[k], name=k) for k in rp.NAMES]
    optimizer.build(variables)
    tnp = tf.experimental.numpy

    @tf.function
    def run():
        ys = tf.TensorArray(problem.x0.dtype, size=steps)
        xs = tf.TensorArray(problem.x0.dtype, size=steps)
        for i in tf.range(steps):
            flat = rp.flatten({k: v.value for k, v in zip(rp.NAMES, variables)}, tnp)
            grads = rp.split(problem.grad(flat, tnp), tnp)
            optimizer.apply([grads[k] for k in rp.NAMES], variables)
            ys = ys.write(i, rp.flatten({k: v.value for k, v in zip(rp.NAMES, variables)}, tnp))
            xs = xs.write(i, rp.flatten(dict(zip(rp.NAMES, optimizer.evaluation_weights(variables))), tnp))
        return ys.stack(), xs.stack()

    ys, xs = run()
    return ys.numpy(), xs.numpy()


def run_reference(transform, problem, steps=STEPS):
    """``(y, x)`` trajectories of an optax ``schedule_free`` transformation."""
    params = {k: jnp.asarray(v) for k, v in problem.init.items()}

    def step(carry, _):
        params, state = carry
        grads = rp.split(problem.grad(rp.flatten(params, jnp), jnp), jnp)
        updates, state = transform.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        evaluation = optax.contrib.schedule_free_eval_params(state, params)
        return (params, state), (rp.flatten(params, jnp), rp.flatten(evaluation, jnp))

    run = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), None, length=steps)[1])
    ys, xs = run(params, transform.init(params))
    return np.asarray(ys), np.asarray(xs)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("problem_name", ["quadratic", "rosenbrock"])
def test_matches_optax_schedule_free(kind, problem_name):
    problem = rp.PROBLEMS[problem_name]()
    lr = SETTINGS[kind][problem_name]
    ys, xs = run_ours(ScheduleFree(_keras_inner(kind, lr)), problem)
    ref_ys, ref_xs = run_reference(optax.contrib.schedule_free(_optax_inner(kind, lr), lr), problem)
    rp.assert_moved(ys, problem)
    rp.assert_matches(ys, ref_ys)
    rp.assert_matches(xs, ref_xs)
    rp.assert_differs(ys, xs)  # x and y are different sequences: comparing both means something


@pytest.mark.parametrize("beta_1, power", [(0.5, 2.0), (0.95, 0.0), (1.0, 1.0)])
def test_beta_1_and_weight_lr_power_match_optax(beta_1, power):
    problem = rp.quadratic()
    lr = 0.01
    ys, xs = run_ours(ScheduleFree(keras.optimizers.SGD(lr), beta_1=beta_1, weight_lr_power=power), problem)
    ref_ys, ref_xs = run_reference(
        optax.contrib.schedule_free(optax.sgd(lr), lr, b1=beta_1, weight_lr_power=power), problem)
    rp.assert_matches(ys, ref_ys)
    rp.assert_matches(xs, ref_xs)


def test_warm_up_weights_the_average_with_the_learning_rate_of_the_same_update():
    """Ours: lr_t of the inner's update t (schedule at t - 1 in optax's count from 1)."""
    problem = rp.quadratic()

    def schedule(count):
        return jnp.minimum(count / 20.0, 1.0) * 0.01

    ys, xs = run_ours(ScheduleFree(keras.optimizers.SGD(Warmup(0.01, warmup_steps=20))), problem)
    shifted = optax.contrib.schedule_free(optax.sgd(schedule), lambda count: schedule(count - 1))
    ref_ys, ref_xs = run_reference(shifted, problem)
    rp.assert_matches(ys, ref_ys)
    rp.assert_matches(xs, ref_xs)
    optax_convention, _ = run_reference(optax.contrib.schedule_free(optax.sgd(schedule), schedule), problem)
    rp.assert_differs(ys, optax_convention)


def test_inner_weight_decay_is_computed_at_y_as_in_optax_schedule_free_adamw():
    problem = rp.quadratic()
    inner = keras.optimizers.AdamW(0.01, beta_1=0.0, epsilon=1e-12, weight_decay=0.5)
    ys, xs = run_ours(ScheduleFree(inner), problem)
    ref_ys, ref_xs = run_reference(
        optax.contrib.schedule_free_adamw(0.01, b1=0.9, eps=1e-12, weight_decay=0.5), problem)
    rp.assert_matches(ys, ref_ys)
    rp.assert_matches(xs, ref_xs)
    no_decay, _ = run_reference(optax.contrib.schedule_free_adamw(0.01, b1=0.9, eps=1e-12), problem)
    rp.assert_differs(ys, no_decay)


def _paper_adam(problem, steps, read_z_after_update=False):
    """Schedule-Free AdamW of the paper (c_t = 1/t, epsilon outside the square root), in float64.

    ``read_z_after_update`` recovers ``x_t`` from ``y_t`` and the *updated* ``z``
    (what Keras 3.15's ``ScheduleFreeAdamW`` does on TensorFlow).
    """
    b1, b2, lr = 0.9, 0.999, 0.01
    y = z = problem.x0.astype(np.float64)
    v = np.zeros_like(y)
    rows = []
    for t in range(1, steps + 1):
        g = problem.grad(y, np)
        v = b2 * v + (1 - b2) * g * g
        z_new = z - lr * g / (np.sqrt(v / (1 - b2**t)) + 1e-12)
        x = (y - (1 - b1) * (z_new if read_z_after_update else z)) / b1
        x = (1 - 1 / t) * x + z_new / t
        z = z_new
        y = b1 * x + (1 - b1) * z
        rows.append(y)
    return np.array(rows)


def test_weight_lr_power_zero_is_the_papers_schedule_free_adamw_and_keras_reads_z_late():
    """With ``weight_lr_power=0`` (c_t = 1/t) ScheduleFree(Adam) is the paper's algorithm.

    Keras 3.15's own ``ScheduleFreeAdamW`` (TensorFlow backend) keeps
    ``momentum_old = momentum.value``, a reference to the slot it updates next,
    so it recovers ``x`` from the updated ``z``: it matches that reading, not
    the paper. If a Keras release fixes it, this test fails: update the docs.
    """
    problem = rp.quadratic()
    ours, _ = run_ours(ScheduleFree(keras.optimizers.Adam(0.01, beta_1=0.0, epsilon=1e-12), weight_lr_power=0.0),
                       problem, steps=STEPS)
    rp.assert_matches(ours, _paper_adam(problem, STEPS))
    keras_own = rp.run_keras(keras.optimizers.ScheduleFreeAdamW(0.01, epsilon=1e-12), problem, steps=STEPS)
    rp.assert_matches(keras_own, _paper_adam(problem, STEPS, read_z_after_update=True))
    rp.assert_differs(keras_own, ours)


# ----------------------------------------------------------------- sparse and float16
ROWS, DIM = 6, 3
REPEATED = np.array([0, 2, 2, 5, 0, 2])  # rows 1, 3, 4 absent; 0 and 2 repeated
DISTINCT = np.array([0, 2, 5])
_rng = np.random.default_rng(0)
W0 = _rng.normal(size=(ROWS, DIM)).astype("float32")
TARGETS = _rng.normal(size=(len(REPEATED), DIM)).astype("float32")


def _rows_run_ours(optimizer, indices, dtype, sparse, steps=STEPS):
    var = keras.Variable(W0.astype(dtype))
    optimizer.build([var])
    targets = TARGETS[: len(indices)]

    @tf.function
    def run():
        ys = tf.TensorArray(dtype, size=steps)
        xs = tf.TensorArray(dtype, size=steps)
        for i in tf.range(steps):
            values = tf.gather(var.value, indices) - tf.cast(targets, var.dtype)
            if sparse:
                grad = tf.IndexedSlices(values, tf.constant(indices), tf.constant([ROWS, DIM]))
            else:
                grad = tf.math.unsorted_segment_sum(values, indices, ROWS)
            optimizer.apply([grad], [var])
            ys = ys.write(i, tf.reshape(var.value, [-1]))
            xs = xs.write(i, tf.reshape(optimizer.evaluation_weights([var])[0], [-1]))
        return ys.stack(), xs.stack()

    ys, xs = run()
    return ys.numpy().astype(np.float64), xs.numpy().astype(np.float64)


def _rows_run_reference(transform, indices, dtype, steps=STEPS):
    targets = jnp.asarray(TARGETS[: len(indices)])
    params = jnp.asarray(W0.astype(dtype))

    def step(carry, _):
        params, state = carry
        grad = jnp.zeros_like(params).at[indices].add(params[indices] - targets.astype(params.dtype))
        updates, state = transform.update(grad, state, params)
        params = optax.apply_updates(params, updates)
        evaluation = optax.contrib.schedule_free_eval_params(state, params)
        return (params, state), (params.reshape(-1), evaluation.reshape(-1))

    run = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), None, length=steps)[1])
    ys, xs = run(params, transform.init(params))
    return np.asarray(ys, np.float64), np.asarray(xs, np.float64)


# float16: x, y, z are combined in float32 here and in float16 by optax; each side
# rounds to float16 (eps ~ 1e-3) at every step, so 100 steps agree to ~1e-2.
TOLERANCE = {"float32": 1e-5, "float16": 2e-2}


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("kind, indices", [("sgd", REPEATED), ("adam", DISTINCT)], ids=["sgd", "adam"])
def test_rows_dense_and_sparse_float32_and_float16(kind, indices, sparse, dtype):
    lr = 0.1 if kind == "sgd" else 0.05
    epsilon = 1e-12 if dtype == "float32" else 1e-6  # 1e-12 is 0 in float16 (0/0 on absent rows)
    ys, xs = _rows_run_ours(ScheduleFree(_keras_inner(kind, lr, epsilon)), indices, dtype, sparse)
    ref_ys, ref_xs = _rows_run_reference(
        optax.contrib.schedule_free(_optax_inner(kind, lr, epsilon), lr), indices, dtype)
    assert np.abs(ys[-1] - W0.reshape(-1)).max() > 0.5
    rp.assert_matches(ys, ref_ys, rtol=TOLERANCE[dtype])
    rp.assert_matches(xs, ref_xs, rtol=TOLERANCE[dtype])
    absent = np.setdiff1d(np.arange(ROWS), indices)
    # Absent rows get no gradient: with SGD they stay put (up to the rounding of x <-> y).
    if kind == "sgd":
        np.testing.assert_allclose(ys[-1].reshape(ROWS, DIM)[absent], W0.astype(dtype)[absent],
                                   rtol=TOLERANCE[dtype])


def _rows_numpy_sgd(lr, beta=0.9, steps=STEPS):
    """The paper's SGD version in float64 on the rows problem (constant lr: c_t = 1/t)."""
    y = z = x = W0.astype(np.float64)
    rows = []
    for t in range(1, steps + 1):
        grad = np.zeros_like(y)
        np.add.at(grad, REPEATED, y[REPEATED] - TARGETS)
        z = z - lr * grad
        x = (1 - 1 / t) * x + z / t
        y = beta * x + (1 - beta) * z
        rows.append(y.reshape(-1))
    return np.array(rows)


def test_float16_is_no_less_accurate_than_optax_float16():
    """Against float64, our float16 error is at most optax's float16 error (both ~1e-2)."""
    ys16, _ = _rows_run_ours(ScheduleFree(keras.optimizers.SGD(0.1)), REPEATED, "float16", sparse=True)
    ref16, _ = _rows_run_reference(optax.contrib.schedule_free(optax.sgd(0.1), 0.1), REPEATED, "float16")
    exact = _rows_numpy_sgd(0.1)
    ours32, _ = _rows_run_ours(ScheduleFree(keras.optimizers.SGD(0.1)), REPEATED, "float32", sparse=True)
    rp.assert_matches(ours32, exact)  # the transcription is the same algorithm
    assert rp.relative_errors(ys16, exact).max() <= rp.relative_errors(ref16, exact).max()


# ----------------------------------------------------------------------- behaviour
def test_a_step_the_inner_optimizer_skips_changes_nothing():
    var = keras.Variable(np.array([1.0, -2.0], "float32"))
    optimizer = ScheduleFree(TransformedOptimizer(keras.optimizers.SGD(0.1), [SkipNonFinite(None)]))
    optimizer.apply([tf.constant([1.0, 1.0])], [var])

    def state():  # weights, z, the averaging scalars, the step counters (not the skip's own counters)
        kept = [v for v in optimizer.variables if "skip_non_finite" not in v.path]
        return [keras.ops.convert_to_numpy(v) for v in kept] + [var.numpy()]

    before = state()
    optimizer.apply([tf.constant([np.nan, 1.0])], [var])
    assert len(before) > 4
    for a, b in zip(before, state()):
        np.testing.assert_array_equal(a, b)


def _numpy_sgd_schedule_free(w, gradients, lr, beta):
    """The paper's SGD version with a constant learning rate (c_t = 1/t): ``(y, x, z)``."""
    x = z = np.asarray(w, np.float64)
    y = x
    for t, g in enumerate(gradients, start=1):
        z = z - lr * np.asarray(g)
        x = (1 - 1 / t) * x + z / t
        y = beta * x + (1 - beta) * z
    return y, x, z


GRADIENTS = ([1.0, 2.0, -1.0], [0.5, 0.0, 2.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])


def test_end_of_fit_swaps_x_in_and_the_next_update_puts_y_back():
    w0 = np.array([1.0, -2.0, 0.5], "float32")
    var = keras.Variable(w0)
    optimizer = ScheduleFree(keras.optimizers.SGD(0.1), beta_1=0.8)
    for g in GRADIENTS[:3]:
        optimizer.apply([tf.constant(g)], [var])
    y, x, _ = _numpy_sgd_schedule_free(w0, GRADIENTS[:3], 0.1, 0.8)
    np.testing.assert_allclose(var.numpy(), y, rtol=1e-6)
    np.testing.assert_allclose(optimizer.evaluation_weights()[0], x, rtol=1e-6)
    assert not optimizer.holds_evaluation_weights
    optimizer.finalize_variable_values([var])  # what model.fit calls at its end
    assert optimizer.holds_evaluation_weights
    np.testing.assert_allclose(var.numpy(), x, rtol=1e-6)
    np.testing.assert_allclose(optimizer.evaluation_weights()[0], x, rtol=1e-6)
    np.testing.assert_allclose(optimizer.training_weights()[0], y, rtol=1e-6)
    optimizer.apply([tf.constant(GRADIENTS[3])], [var])  # first puts y back, then steps from it
    assert not optimizer.holds_evaluation_weights
    y, x, _ = _numpy_sgd_schedule_free(w0, GRADIENTS, 0.1, 0.8)
    np.testing.assert_allclose(var.numpy(), y, rtol=1e-6)
    np.testing.assert_allclose(optimizer.evaluation_weights()[0], x, rtol=1e-6)


def test_swaps_are_exact_round_trips_and_idempotent():
    var = keras.Variable(np.array([1.0, -2.0, 0.5], "float32"))
    optimizer = ScheduleFree(keras.optimizers.SGD(0.1))
    assert not optimizer.swap_to_evaluation_weights([var])  # before any update x is the weights
    for g in GRADIENTS[:3]:
        optimizer.apply([tf.constant(g)], [var])
    y = var.numpy().copy()
    assert optimizer.swap_to_evaluation_weights([var])
    assert not optimizer.swap_to_evaluation_weights([var])
    assert optimizer.swap_to_training_weights([var], weights=[y])
    np.testing.assert_array_equal(var.numpy(), y)
    assert not optimizer.swap_to_training_weights([var])


MOMENTUM_ON = [
    (lambda: keras.optimizers.SGD(0.1, momentum=0.9), "momentum=0"),
    (lambda: keras.optimizers.Adam(), "beta_1=0"),
    (lambda: keras.optimizers.AdamW(), "beta_1=0"),
    (lambda: keras.optimizers.Lion(), "Lion cannot"),
    (lambda: keras.optimizers.Muon(), "adam_beta_1=0"),
    (lambda: __import__("keras_trainkit").optimizers.Adan(beta_1=0.0), "beta_2=0"),
    (lambda: TransformedOptimizer(keras.optimizers.Adam(), []), "beta_1=0"),
    (lambda: keras.optimizers.ScheduleFreeAdamW(), "ScheduleFreeAdamW alone"),
    (lambda: keras.optimizers.SGD(0.1, use_ema=True), "use_ema"),
    (lambda: keras.optimizers.SGD(0.1, gradient_accumulation_steps=2), "gradient_accumulation_steps"),
]


@pytest.mark.parametrize("make, fix", MOMENTUM_ON, ids=[fix for _, fix in MOMENTUM_ON])
def test_refuses_an_inner_optimizer_with_momentum_naming_the_argument(make, fix):
    with pytest.raises(ValueError, match="Received: optimizer") as error:
        ScheduleFree(make())
    assert fix.split("=")[0] in str(error.value)


@pytest.mark.parametrize("make", [
    lambda: keras.optimizers.SGD(0.1),
    lambda: keras.optimizers.Adam(beta_1=0.0),
    lambda: __import__("keras_trainkit").optimizers.RAdam(beta_1=0.0),
    lambda: "sgd",
])
def test_accepts_momentum_free_optimizers(make):
    ScheduleFree(make())


@pytest.mark.parametrize("kwargs, name", [
    ({"beta_1": 0.0}, "beta_1"), ({"beta_1": 1.5}, "beta_1"), ({"weight_lr_power": -1.0}, "weight_lr_power"),
    ({"learning_rate": 0.1}, "learning_rate"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        ScheduleFree(keras.optimizers.SGD(0.1), **kwargs)


def test_evaluation_weights_needs_variables_before_build():
    with pytest.raises(ValueError, match="Received: variables=None"):
        ScheduleFree(keras.optimizers.SGD(0.1)).evaluation_weights()
