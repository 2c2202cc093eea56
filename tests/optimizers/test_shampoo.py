"""Shampoo against a line-by-line numpy transcription of the algorithm.

The reference below follows Gupta et al. (2018) / Anil et al. (2020) as stated in
the ``Shampoo`` docstring, written independently: explicit loops over the blocks
(slices, no padding; balanced block sizes, see ``block_layout``), ``numpy.linalg.eigh`` in float64, relative ridge
``epsilon * lambda_max`` added before the inverse 4th root, Adam-normalization
graft (epsilon outside the square root), layer-wise grafting, bias-corrected
momentum after grafting.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.optimizers import Shampoo
from keras_trainkit.optimizers.shampoo import (
    balanced_block_size,
    block_layout,
    block_view,
    inverse_pth_root_eigh,
    inverse_pth_root_newton,
    unblock,
)
from tests.conftest import mirrored_two_cpus


def _inv_root(a, p, eps):
    lam, q = np.linalg.eigh(a)
    lam = np.maximum(lam, 0.0)
    ridge = eps * max(lam.max(), 1e-30)
    return (q * (lam + ridge) ** (-1.0 / p)) @ q.T


class NumpyShampoo:
    """Reference transcription; `state` per variable, float64."""

    def __init__(self, lr, beta_1, beta_2, eps, block, every, start, graft, graft_beta_2, graft_eps):
        self.__dict__.update(locals())
        self.t = 0
        self.state = {}

    def step(self, name, w, g):
        shape = w.shape
        st = self.state.setdefault(name, {"m": np.zeros(shape), "v": np.zeros(shape)})
        t = self.t + 1
        if self.graft == "adam":
            st["v"] = self.graft_beta_2 * st["v"] + (1 - self.graft_beta_2) * g * g
            d_graft = g / (np.sqrt(st["v"] / (1 - self.graft_beta_2**t)) + self.graft_eps)
        else:
            d_graft = g
        d = d_graft
        if w.ndim >= 2:
            mat = g.reshape(-1, shape[-1])
            rows, cols = mat.shape
            # Balanced blocks: the fewest blocks of at most `block` per dimension, all of
            # size ceil(dim / count) but the last, which takes the remainder.
            br = -(-rows // -(-rows // self.block))
            bc = -(-cols // -(-cols // self.block))
            out = np.zeros_like(mat)
            for i in range(0, rows, br):
                for j in range(0, cols, bc):
                    gb = mat[i : i + br, j : j + bc]
                    key = (i, j)
                    if key not in st:
                        st[key] = [np.zeros((gb.shape[0],) * 2), np.zeros((gb.shape[1],) * 2), None, None]
                    blk = st[key]
                    wgt = 1.0 if self.beta_2 == 1.0 else 1 - self.beta_2
                    blk[0] = self.beta_2 * blk[0] + wgt * gb @ gb.T
                    blk[1] = self.beta_2 * blk[1] + wgt * gb.T @ gb
                    if (t - 1) % self.every == 0:
                        blk[2] = _inv_root(blk[0], 4, self.eps)
                        blk[3] = _inv_root(blk[1], 4, self.eps)
                    out[i : i + br, j : j + bc] = blk[2] @ gb @ blk[3]
            s = out.reshape(shape)
            if t - 1 >= self.start:
                ns = np.linalg.norm(s)
                d = s * (np.linalg.norm(d_graft) / ns) if ns > 0 else np.zeros_like(s)
        st["m"] = self.beta_1 * st["m"] + (1 - self.beta_1) * d
        return w - self.lr * st["m"] / (1 - self.beta_1**t)


def _problem(seed=0):
    """Ill-conditioned quadratic over a (7, 5) matrix + a bias vector."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(7, 7))
    q, _ = np.linalg.qr(a)
    h_left = q @ np.diag(np.logspace(0, 2, 7)) @ q.T  # condition number 100
    b = rng.normal(size=(5, 5))
    q2, _ = np.linalg.qr(b)
    h_right = q2 @ np.diag(np.logspace(0, 1, 5)) @ q2.T
    target = rng.normal(size=(7, 5))
    c = np.logspace(0, 2, 5)

    def grads(w, bias):
        return h_left @ (w - target) @ h_right, c * (bias - 1.0)

    return rng.normal(size=(7, 5)), rng.normal(size=5), grads


def _run(dtype, steps, **kwargs):
    keras_kwargs = {
        "learning_rate": 0.01,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "epsilon": 1e-4,
        "max_block_size": 3,
        "preconditioning_compute_steps": 4,
        "start_preconditioning_step": 3,
        "graft": "adam",
        "graft_beta_2": 0.99,
        "graft_epsilon": 1e-8,
    }
    keras_kwargs.update(kwargs)
    w0, b0, grads = _problem()
    w = keras.Variable(w0.astype(dtype), dtype=dtype)
    b = keras.Variable(b0.astype(dtype), dtype=dtype)
    opt = Shampoo(**keras_kwargs)
    ref = NumpyShampoo(
        keras_kwargs["learning_rate"],
        keras_kwargs["beta_1"],
        keras_kwargs["beta_2"],
        keras_kwargs["epsilon"],
        keras_kwargs["max_block_size"],
        keras_kwargs["preconditioning_compute_steps"],
        keras_kwargs["start_preconditioning_step"],
        keras_kwargs["graft"],
        keras_kwargs["graft_beta_2"],
        keras_kwargs["graft_epsilon"],
    )
    rw, rb = w0.copy(), b0.copy()
    step_fn = tf.function(lambda gw, gb: opt.apply([gw, gb], [w, b]))
    errors = []
    for _ in range(steps):
        gw, gb = grads(rw, rb)  # gradients at the reference point, fed to both
        step_fn(tf.constant(gw, dtype), tf.constant(gb, dtype))
        rw, rb = ref.step("w", rw, gw), ref.step("b", rb, gb)
        ref.t += 1
        scale = np.abs(rw).max()
        errors.append(max(np.abs(w.numpy() - rw).max() / scale, np.abs(b.numpy() - rb).max() / np.abs(rb).max()))
        w.assign(rw.astype(dtype))  # re-anchor: the error is measured per step
        b.assign(rb.astype(dtype))
    return np.array(errors), rw


@pytest.mark.parametrize("graft", ["adam", "sgd"])
def test_matches_numpy_reference_float64(graft):
    # Learning rates are powers of two: the learning-rate variable is float32.
    errors, _ = _run("float64", 100, graft=graft, learning_rate=2.0**-7 if graft == "adam" else 2.0**-10)
    assert errors.max() < 1e-9, errors.max()


def test_matches_numpy_reference_float32():
    # The per-step error is bounded by float32 round-off in the inverse roots:
    # eigenvalues carry an absolute error ~ u * lambda_max, so the ridge
    # epsilon = 1e-4 makes (lambda + eps*lambda_max)^(-1/4) good to ~u / (4 eps)
    # in the smallest directions; after grafting the step's relative error stays
    # well below 1e-5 relative to the weights.
    errors, _ = _run("float32", 100)
    assert errors.max() < 1e-5, errors.max()


@pytest.mark.parametrize("inverse_root", ["eigh", "newton"])
def test_float16_variables_track_reference(inverse_root):
    # float16 has no eigh kernel and cannot hold the statistics: they, the roots and
    # the moments stay float32. A float16 weight is good to 2**-11 (4.9e-4) of its
    # magnitude; the bound allows three such roundings. (Before: eigh raised, Newton
    # gave NaN weights.)
    errors, _ = _run("float16", 100, learning_rate=0.05, inverse_root=inverse_root)
    assert np.all(np.isfinite(errors)) and errors.max() < 1.5e-3, errors.max()


def test_float16_variables_get_float32_state():
    optimizer = Shampoo(max_block_size=4)
    kernel = keras.Variable(np.ones((6, 5), "float16"), dtype="float16", name="kernel")
    bias = keras.Variable(np.ones(5, "float16"), dtype="float16", name="bias")
    optimizer.build([kernel, bias])
    slots = [v for v in optimizer.variables if v.name != "iteration" and "learning_rate" not in v.name]
    assert {keras.backend.standardize_dtype(v.dtype) for v in slots} == {"float32"}
    optimizer.apply([np.full((6, 5), 300.0, "float16"), np.full(5, 300.0, "float16")], [kernel, bias])
    assert kernel.dtype == "float16" and np.all(np.isfinite(kernel.numpy()))


def test_summed_statistics_match_reference():
    # beta_2 = 1: L and R are plain sums of G G^T and G^T G (Gupta et al. 2018).
    errors, _ = _run("float64", 100, beta_2=1.0, learning_rate=2.0**-7)
    assert errors.max() < 1e-9, errors.max()


def test_balanced_blocks_match_reference():
    # max_block_size=4 on the (7, 5) matrix: rows 4 + 3, columns 3 + 2 (a plain cut
    # would give columns 4 + 1); the padded column of the last block must not leak.
    errors, _ = _run("float64", 100, max_block_size=4, learning_rate=2.0**-7)
    assert errors.max() < 1e-9, errors.max()


@pytest.mark.parametrize(
    "dim, max_block, expected",
    [(784, 128, (7, 112)), (512, 128, (4, 128)), (10, 128, (1, 10)), (131, 128, (2, 66)),
     (9, 4, (3, 3)), (10, 4, (3, 4)), (5, 4, (2, 3)), (1, 1, (1, 1))],
)
def test_balanced_block_size(dim, max_block, expected):
    blocks, size = balanced_block_size(dim, max_block)
    assert (blocks, size) == expected
    assert size <= max_block and (blocks - 1) * size < dim <= blocks * size
    assert blocks * size - dim < blocks  # padding: fewer entries than blocks


def test_block_view_round_trip():
    x = np.random.default_rng(3).normal(size=(2, 7, 5)).astype("float32")  # matrix view 14 x 5
    layout = block_layout(x.shape, 4)
    assert layout == (4, 2, 4, 3)
    blocks = np.asarray(block_view(x, layout))
    assert blocks.shape == (4, 2, 4, 3)
    np.testing.assert_array_equal(blocks[1, 0], x.reshape(14, 5)[4:8, 0:3])
    np.testing.assert_array_equal(blocks[3, 1, :2, :2], x.reshape(14, 5)[12:14, 3:5])
    assert not blocks[3, :, 2:].any() and not blocks[:, 1, :, 2:].any()  # zero padding
    np.testing.assert_array_equal(np.asarray(unblock(blocks, x.shape)), x)


def test_rosenbrock_matches_reference():
    # 2-D Rosenbrock on a (1, 2) matrix variable: Shampoo's block is 1x2, R is 2x2.
    def grad(xy):
        x, y = xy[0, 0], xy[0, 1]
        return np.array([[-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)]])

    kw = {"learning_rate": 2.0**-10, "beta_1": 0.9, "beta_2": 0.99, "epsilon": 1e-3, "max_block_size": 4,
              "preconditioning_compute_steps": 5, "start_preconditioning_step": 2, "graft": "adam",
              "graft_beta_2": 0.999, "graft_epsilon": 1e-8}
    var = keras.Variable(np.array([[-1.0, 1.5]]), dtype="float64")
    opt = Shampoo(**kw)
    ref = NumpyShampoo(*[kw[k] for k in ("learning_rate", "beta_1", "beta_2", "epsilon", "max_block_size",
                                          "preconditioning_compute_steps", "start_preconditioning_step",
                                          "graft", "graft_beta_2", "graft_epsilon")])
    r = np.array([[-1.0, 1.5]])
    step = tf.function(lambda g: opt.apply([g], [var]))
    for _ in range(150):
        g = grad(r)
        step(tf.constant(g))
        r = ref.step("xy", r, g)
        ref.t += 1
        np.testing.assert_allclose(var.numpy(), r, rtol=1e-9)
        var.assign(r)
    start = np.array([[-1.0, 1.5]])
    f = lambda p: (1 - p[0, 0]) ** 2 + 100 * (p[0, 1] - p[0, 0] ** 2) ** 2
    assert f(r) < f(start)


def test_inverse_root_helpers_agree_with_numpy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2, 6, 6))
    a = a @ np.swapaxes(a, -1, -2)
    expected = np.stack([_inv_root(m, 4, 1e-3) for m in a])
    np.testing.assert_allclose(np.asarray(inverse_pth_root_eigh(a, 4, 1e-3)), expected, rtol=1e-8, atol=1e-10)
    newton = np.asarray(inverse_pth_root_newton(a, 4, 1e-3, 40))
    np.testing.assert_allclose(newton, expected, rtol=1e-6, atol=1e-8)


def test_newton_root_in_float32_under_xla():
    rng = np.random.default_rng(2)
    q = np.linalg.qr(rng.normal(size=(3, 8, 8)))[0]
    a = ((q * np.logspace(-2, 2, 8)) @ np.swapaxes(q, -1, -2)).astype("float32")  # condition 1e4
    fn = tf.function(lambda x: inverse_pth_root_newton(x, 4, 1e-4, 40), jit_compile=True)
    got = fn(a).numpy()
    expected = np.stack([_inv_root(m.astype("float64"), 4, 1e-4) for m in a])
    # Coupled Newton in float32 is good to ~1e-4 of the matrix norm (round-off in
    # the repeated products), not per entry: compare in the Frobenius norm.
    error = np.linalg.norm(got - expected, axis=(1, 2)) / np.linalg.norm(expected, axis=(1, 2))
    assert error.max() < 1e-3, error


def test_newton_option_tracks_reference():
    errors, _ = _run("float64", 40, inverse_root="newton", newton_iterations=60)
    assert errors.max() < 1e-6, errors.max()


def _data():
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    y = (x @ np.random.default_rng(1).normal(size=(6, 1))).astype("float32")
    return x, y


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(1)])


def test_fit_jit_compile():
    x, y = _data()
    model = _model()
    opt = Shampoo(learning_rate=0.01, max_block_size=4, preconditioning_compute_steps=3, start_preconditioning_step=2,
                  inverse_root="newton", newton_iterations=20)
    model.compile(optimizer=opt, loss="mse", jit_compile=True)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_save_load_keeps_preconditioners_and_resumes(tmp_path):
    x, y = _data()
    model = _model()
    opt = Shampoo(learning_rate=0.01, max_block_size=4, preconditioning_compute_steps=3, start_preconditioning_step=2)
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    names = [v.name for v in loaded.optimizer.variables]
    assert any("precond_left" in n for n in names)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Continued training after loading equals training that never stopped.
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_block_size": 0}, "max_block_size"),
        ({"preconditioning_compute_steps": 0}, "preconditioning_compute_steps"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"beta_2": 0.0}, "beta_2"),
        ({"beta_1": 1.0}, "beta_1"),
        ({"graft": "lion"}, "graft"),
        ({"inverse_root": "qr"}, "inverse_root"),
        ({"start_preconditioning_step": -1}, "start_preconditioning_step"),
        ({"learning_rate": -0.1}, "learning_rate"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"{name}=.*") as info:
        Shampoo(**kwargs)
    assert "Received:" in str(info.value)


def test_mirrored_strategy_equals_one_device():
    x, y = _data()

    # The all-reduced gradient differs from the one-device gradient in the last bits
    # (summation order); a larger ridge keeps the inverse roots from amplifying that.
    def build():
        return Shampoo(learning_rate=0.01, max_block_size=4, preconditioning_compute_steps=2,
                       start_preconditioning_step=1, epsilon=1e-3)

    one = _model()
    one.compile(optimizer=build(), loss="mse")
    one.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    with mirrored_two_cpus().scope():
        two = _model()
        two.compile(optimizer=build(), loss="mse")
    two.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(one.weights, two.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_mixed_float16_with_loss_scaling():
    x, y = _data()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = _model()
        model.compile(optimizer=Shampoo(learning_rate=0.01, max_block_size=4, start_preconditioning_step=1), loss="mse")
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)


def test_weight_decay_schedule_and_exclusions():
    """Shampoo takes the TrainkitOptimizer weight decay: a schedule, decoupled, scaled by
    the learning rate, with name exclusions. With zero gradients (and preconditioning
    not started) only the decay moves the weights: w1 = w0 * (1 - lr * wd(0))."""
    schedule = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=1, decay_rate=0.5)
    optimizer = Shampoo(learning_rate=0.1, weight_decay=schedule, exclude_from_weight_decay=["bias"])
    kernel = keras.Variable(np.full((3, 2), 2.0, "float32"), name="kernel")
    bias = keras.Variable(np.full((2,), 2.0, "float32"), name="bias")
    optimizer.apply([np.zeros((3, 2), "float32"), np.zeros((2,), "float32")], [kernel, bias])
    np.testing.assert_allclose(kernel.numpy(), 2.0 * (1 - 0.1 * 0.5), rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), 2.0)
    optimizer.apply([np.zeros((3, 2), "float32"), np.zeros((2,), "float32")], [kernel, bias])
    np.testing.assert_allclose(kernel.numpy(), 2.0 * 0.95 * (1 - 0.1 * 0.25), rtol=1e-6)
    restored = Shampoo.from_config(optimizer.get_config())
    assert isinstance(restored._weight_decay, keras.optimizers.schedules.ExponentialDecay)
