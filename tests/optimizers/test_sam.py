"""SAM against optax.contrib.sam, ASAM against a numpy transcription, SAMModel in fit.

optax's SAM (``opaque_mode=True``, ``adv_optimizer = chain(normalize(), sgd(rho))``)
takes ``e = rho * g / ||g||`` with no epsilon; ours divides by ``||g|| + eps`` with
``eps = 1e-12`` (Foret et al.'s reference code), a relative difference of about
``1e-12 / ||g||``, far below float32 resolution here.
"""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest
import tensorflow as tf
from keras import ops

from keras_trainkit.optimizers import SAM, SAMModel, sam_gradients, sam_perturbation
from tests.conftest import mirrored_two_cpus




def quadratic(n=10, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    h = (q * np.logspace(0, 3, n)) @ q.T  # condition number 1e3
    c = rng.normal(size=n)
    h32, c32 = h.astype("float32"), c.astype("float32")

    def keras_loss(w):
        d = w - c32
        return 0.5 * ops.sum(d * ops.matmul(h32, d))

    def jax_loss(w):
        d = w - c32
        return 0.5 * jnp.sum(d * (h32 @ d))

    return rng.normal(size=n), keras_loss, jax_loss


def rosenbrock():
    def loss(w, xp):
        return (1.0 - w[0]) ** 2 + 100.0 * (w[1] - w[0] ** 2) ** 2

    return np.array([-1.2, 1.4]), (lambda w: loss(w, ops)), (lambda w: loss(w, jnp))


@pytest.mark.parametrize("problem, lr, rho", [(quadratic, 1e-3, 0.05), (rosenbrock, 2e-4, 0.02)])
def test_matches_optax_sam(problem, lr, rho):
    w0, keras_loss, jax_loss = problem()
    var = keras.Variable(w0.astype("float32"))
    sam = SAM(keras.optimizers.SGD(lr, momentum=0.9), rho=rho)

    @tf.function
    def step():
        _, grads = sam.compute_gradients(lambda: keras_loss(var), [var])
        sam.apply(grads, [var])

    ref = optax.contrib.sam(
        optax.sgd(lr, momentum=0.9),
        optax.chain(optax.contrib.normalize(), optax.sgd(rho)),
        sync_period=2,
        opaque_mode=True,
    )
    params = jnp.asarray(w0, jnp.float32)
    state = ref.init(params)
    grad_fn = jax.grad(lambda p, _: jax_loss(p))

    @jax.jit
    def ref_step(params, state):
        updates, state = ref.update(jax.grad(jax_loss)(params), state, params, grad_fn=grad_fn)
        return optax.apply_updates(params, updates), state

    for t in range(110):
        step()
        params, state = ref_step(params, state)
        expected = np.asarray(params)
        error = np.abs(var.numpy() - expected).max() / np.abs(expected).max()
        assert error <= 1e-5, (t, error)
    assert float(keras_loss(var)) < float(keras_loss(keras.Variable(w0.astype("float32"))))


def numpy_asam_step(w, grad, lr, rho, eta, eps):
    """Kwon et al. (2021), Algorithm 1, with T_w = |w| + eta, then an SGD step."""
    g = grad(w)
    t = np.abs(w) + eta
    e = rho * t * t * g / (np.linalg.norm(t * g) + eps)
    return w - lr * grad(w + e)


@pytest.mark.parametrize("problem, lr", [(quadratic, 1e-3), (rosenbrock, 2e-4)])
def test_asam_matches_numpy_transcription(problem, lr):
    w0, keras_loss, _ = problem()
    var = keras.Variable(w0.astype("float32"))
    sam = SAM(keras.optimizers.SGD(lr), rho=0.5, adaptive=True, eta=0.01)

    @tf.function
    def step():
        _, grads = sam.compute_gradients(lambda: keras_loss(var), [var])
        sam.apply(grads, [var])

    def grad(w):  # gradient of the same (float32) loss by TF autodiff, returned as float64
        x = tf.constant(w)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = keras_loss(ops.cast(x, "float32"))
        return tape.gradient(loss, x).numpy().astype("float64")

    w = w0.copy()
    for t in range(100):
        var.assign(w.astype("float32"))  # the same point for both: per-step error
        step()
        w = numpy_asam_step(w, grad, lr, 0.5, 0.01, 1e-12)
        error = np.abs(var.numpy() - w).max() / np.abs(w).max()
        assert error <= 1e-5, (t, error)


def test_perturbation_formulas():
    g = [np.array([3.0, 0.0], "float32"), np.array([4.0], "float32")]
    w = [np.array([2.0, 1.0], "float32"), np.array([-0.5], "float32")]
    e = sam_perturbation(g, w, rho=0.1)
    np.testing.assert_allclose(np.concatenate([np.asarray(x) for x in e]), [0.06, 0.0, 0.08], rtol=1e-6)
    e = sam_perturbation(g, w, rho=0.1, adaptive=True)
    norm = np.sqrt(6.0**2 + 2.0**2)  # T g with T = |w|: [6, 0, 2]
    np.testing.assert_allclose(
        np.concatenate([np.asarray(x) for x in e]), 0.1 * np.array([4 * 3.0, 0.0, 0.25 * 4.0]) / norm, rtol=1e-6
    )
    assert sam_perturbation([None, g[1]], w, rho=0.1)[0] is None
    inf = sam_perturbation([np.array([np.inf], "float32")], [np.zeros(1, "float32")])
    np.testing.assert_array_equal(np.asarray(inf[0]), [0.0])


def test_trainer_hook_standalone_leaves_weights_unchanged():
    w = keras.Variable(np.array([1.0, -2.0], "float32"))
    loss, grads = sam_gradients(lambda: ops.sum(w * w * w), [w], rho=0.1)
    # Hand computation: g = 3 w^2 = [3, 12]; e = 0.1 g / ||g||; gradient at w + e.
    g = 3 * np.array([1.0, -2.0]) ** 2
    e = 0.1 * g / np.linalg.norm(g)
    np.testing.assert_allclose(grads[0].numpy(), 3 * (np.array([1.0, -2.0]) + e) ** 2, rtol=1e-6)
    np.testing.assert_allclose(float(loss), 1.0 - 8.0, rtol=1e-6)
    np.testing.assert_array_equal(w.numpy(), [1.0, -2.0])
    with pytest.raises(TypeError, match="Received:"):
        sam_gradients(lambda: tf.reduce_sum(tf.Variable([1.0])), [tf.Variable([1.0])])


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (np.sin(x @ rng.normal(size=(4, 1)))).astype("float32")


def _base():
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])


def test_sam_model_one_step_equals_numpy_reference():
    x, y = _data(16)
    base = _base()
    w1, b1, w2, b2 = [v.numpy().astype("float64") for v in base.weights]
    model = SAMModel(base)
    model.compile(optimizer=SAM(keras.optimizers.SGD(0.1), rho=0.05), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)

    xd, yd = x.astype("float64"), y.astype("float64")

    def grads(p):
        w1, b1, w2, b2 = p
        h = np.tanh(xd @ w1 + b1)
        out = h @ w2 + b2
        d_out = 2 * (out - yd) / out.size
        d_h = (d_out @ w2.T) * (1 - h * h)
        return [xd.T @ d_h, d_h.sum(0), h.T @ d_out, d_out.sum(0)]

    params = [w1, b1, w2, b2]
    g = grads(params)
    norm = np.sqrt(sum((gi**2).sum() for gi in g))
    perturbed = [p + 0.05 * gi / (norm + 1e-12) for p, gi in zip(params, g)]
    expected = [p - 0.1 * gi for p, gi in zip(params, grads(perturbed))]
    for var, exp in zip(base.weights, expected):
        np.testing.assert_allclose(var.numpy(), exp, rtol=1e-5, atol=1e-6)


def test_sam_model_fit_reduces_loss_jit_and_save_load(tmp_path):
    x, y = _data()
    model = SAMModel(_base())
    model.compile(optimizer=SAM(keras.optimizers.Adam(0.02), rho=0.05), loss="mse", jit_compile=True)
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]
    path = tmp_path / "sam.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SAMModel) and isinstance(loaded.optimizer, SAM)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sam_model_needs_sam_optimizer():
    x, y = _data(8)
    model = SAMModel(_base())
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(TypeError, match="SAM"):
        model.fit(x, y, verbose=0)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"rho": 0.0}, "rho"), ({"rho": -0.1}, "rho"), ({"eps": -1.0}, "eps"), ({"eta": -0.5}, "eta")],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        SAM(keras.optimizers.SGD(0.1), **kwargs)


def test_sam_model_under_mirrored_strategy():
    x, y = _data()
    with mirrored_two_cpus().scope():
        model = SAMModel(_base())
        model.compile(optimizer=SAM(keras.optimizers.SGD(0.05, momentum=0.9), rho=0.05), loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_sam_model_mixed_float16():
    x, y = _data()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = SAMModel(_base())
        model.compile(optimizer=SAM(keras.optimizers.Adam(0.01), rho=0.05), loss="mse")
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        history = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)


@pytest.mark.parametrize(
    "compile_kwargs",
    [{"run_eagerly": True}, {}, {"jit_compile": True}],
    ids=["eager", "compiled", "jit"],
)
def test_plain_model_with_sam_fails_on_its_first_step(compile_kwargs):
    """Issue 17: a plain model compiled with SAM used to train plain SGD in silence."""
    x, y = _data(16)
    model = _base()
    before = [w.numpy().copy() for w in model.weights]
    model.compile(optimizer=SAM(keras.optimizers.SGD(0.1), rho=0.05), loss="mse", **compile_kwargs)
    with pytest.raises(ValueError, match=r"SAMModel.*Trainer") as info:
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert "plain keras.Model" in str(info.value) and "Received: optimizer=SAM(SGD)" in str(info.value)
    for a, w in zip(before, model.weights):
        np.testing.assert_array_equal(a, w.numpy())  # not one plain-SGD step was taken


def test_plain_apply_needs_the_perturbation_first():
    var = keras.Variable([1.0, -2.0])
    sam = SAM(keras.optimizers.SGD(0.1), rho=0.1)
    grads = [keras.ops.convert_to_tensor([0.5, 0.5])]
    with pytest.raises(ValueError, match="SAMModel"):
        sam.apply(grads, [var])
    e = sam.perturbation(grads, [var])  # a loop of one's own: perturb, then apply
    sam.apply([g + 0.0 * p for g, p in zip(grads, e)], [var])
    np.testing.assert_allclose(var.numpy(), [0.95, -2.05], rtol=1e-6)


def _numpy_sam_perturbation(grads, weights, rho, adaptive=False):
    """Foret et al. 2021: ``e = rho g / ||g||`` (ASAM: ``rho T^2 g / ||T g||``, ``T = |w|``), dense float64."""
    scaled = [g * np.abs(w) if adaptive else g for g, w in zip(grads, weights)]
    norm = np.sqrt(sum((s**2).sum() for s in scaled))
    return [rho * (np.abs(w) * s if adaptive else s) / norm for s, w in zip(scaled, weights)]


@pytest.mark.parametrize("adaptive", [False, True])
def test_perturbation_of_sparse_gradient_with_repeated_and_absent_rows(adaptive):
    """A tf.IndexedSlices (an Embedding's gradient) is the dense gradient it sums to."""
    table = np.arange(1.0, 9.0, dtype="float32").reshape(4, 2) / 4
    other = np.array([0.5, -1.0], "float32")
    # Rows 1 (twice) and 2; rows 0 and 3 absent.
    values = np.array([[1.0, -2.0], [3.0, 0.5], [-1.0, 1.0]], "float32")
    slices = tf.IndexedSlices(tf.constant(values), tf.constant([1, 2, 1]), tf.constant([4, 2]))
    dense = np.zeros((4, 2))
    dense[1] = values[0] + values[2]
    dense[2] = values[1]
    other_grad = np.array([0.25, 2.0], "float32")
    variables = [keras.Variable(table), keras.Variable(other)]
    e = sam_perturbation([slices, other_grad], variables, rho=0.3, adaptive=adaptive)
    expected = _numpy_sam_perturbation([dense, other_grad.astype("float64")], [table, other], 0.3, adaptive)
    for got, exp in zip(e, expected):
        np.testing.assert_allclose(np.asarray(got), exp, rtol=1e-6, atol=1e-7)


def test_sam_model_with_embedding_equals_one_hot_dense_and_numpy():
    """SAMModel.fit on an Embedding (sparse gradient, an id seen twice) takes the step of the same
    function written as one-hot @ Dense (dense gradient), and of a numpy transcription."""
    init = np.arange(8, dtype="float32").reshape(4, 2) / 10
    ids = np.array([[1, 1, 2]])
    y = np.zeros((1, 2), "float32")
    ids_in = keras.Input((3,), dtype="int32")
    embed = keras.layers.Embedding(4, 2, embeddings_initializer=keras.initializers.Constant(init))
    embedding_model = keras.Model(ids_in, ops.sum(embed(ids_in), axis=1))
    onehot_in = keras.Input((3, 4))
    dense = keras.layers.Dense(2, use_bias=False, kernel_initializer=keras.initializers.Constant(init))
    dense_model = keras.Model(onehot_in, ops.sum(dense(onehot_in), axis=1))
    for model, x in ((embedding_model, ids), (dense_model, np.eye(4, dtype="float32")[ids])):
        sam_model = SAMModel(model)
        sam_model.compile(optimizer=SAM(keras.optimizers.SGD(0.1), rho=0.5), loss="mse")
        sam_model.fit(x, y, epochs=1, verbose=0)

    def grad(w):  # d/dW of mean((sum_i W[ids_i])**2) over the 2 outputs
        out = w[ids[0]].sum(0)
        g = np.zeros_like(w)
        for i in ids[0]:
            g[i] += out
        return g

    w = init.astype("float64")
    (e,) = _numpy_sam_perturbation([grad(w)], [w], 0.5)
    expected = w - 0.1 * grad(w + e)
    np.testing.assert_allclose(embed.embeddings.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(embed.embeddings.numpy(), dense.kernel.numpy(), rtol=1e-6, atol=1e-7)


def test_trainer_hook_with_sparse_gradient_equals_numpy():
    """``sam_gradients`` (the Trainer's hook) on a gather: the perturbation uses the summed rows."""
    init = np.array([[1.0, 0.0], [0.5, -1.0], [2.0, 1.0]], "float32")
    table = keras.Variable(init)
    ids = tf.constant([0, 0, 2])
    _, (grad,) = sam_gradients(lambda: ops.sum(ops.take(table, ids, axis=0) ** 2), [table], rho=0.2)

    def numpy_grad(w):
        g = np.zeros_like(w)
        for i in (0, 0, 2):
            g[i] += 2 * w[i]
        return g

    w = init.astype("float64")
    (e,) = _numpy_sam_perturbation([numpy_grad(w)], [w], 0.2)
    np.testing.assert_allclose(np.asarray(tf.convert_to_tensor(grad)), numpy_grad(w + e), rtol=1e-6)
