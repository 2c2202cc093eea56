"""SOAP against pytorch-optimizer 4.1 ``SOAP`` over 100 steps: 2-D, blocked and N-D kernels.

pytorch-optimizer is run with ``merge_dims=False``, ``precondition_1d=False``,
``normalize_gradient=False`` (its defaults), so a bias gets Adam with SOAP's
step semantics (first step skipped, bias correction at ``t - 1``).

Why float64 for most checks: at the second step the rotated gradient
``Q_L^T G Q_R`` is nearly diagonal (the bases were made from the first
gradient), and its off-diagonal entries are rounding noise (~1e-7 in
float32). Adam's early step divides each entry by its own magnitude, so in
float32 with a small epsilon the *sign* of noise decides part of the step, in
any implementation: ours and pytorch-optimizer's float32 trajectories differ
by 1e-2 from step 2 on. In float64 (or in float32 with an epsilon well above
the noise, kept as one check) they agree to 4e-6 over 100 steps. The float64
runs differ by 1e-9 from step 2 (the Keras learning-rate variable is float32)
and by 1e-7 after the first refresh (pytorch-optimizer computes the QR in
float32 for every dtype).

Conventions pinned: epsilon outside ``sqrt(v)`` with the bias correction in
the step size; decay applied after the step (a large decay is part of the
checked runs); a kernel cut into blocks equals pytorch-optimizer run on each
block as a separate parameter (blocks of 3 x 2 from a 5 x 4 kernel, the last
row block zero-padded); an N-D kernel equals it run on the matrix view
``prod(shape[:-1]) x shape[-1]``. Only shapes whose statistics are full rank
at the first step (or rank-deficient by one) are compared: in a larger null
space the eigenvector basis is the solver's choice (see the class docstring).
"""

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers import SOAP
from keras_trainkit.optimizers.soap import padding_diagonal, project, project_back
from tests.optimizers import reference_drivers as tr
from tests.optimizers import reference_problems as rp

torch_optimizer = pytest.importorskip("pytorch_optimizer")


def torch_soap(kernel_decay=0.0, bias_decay=0.0, **kwargs):
    """pytorch-optimizer's SOAP with the kernel(s) and the bias (last) in groups of their own decay."""

    def make(params):
        groups = [{"params": params[:-1], "weight_decay": kernel_decay}, {"params": params[-1:], "weight_decay": bias_decay}]
        return torch_optimizer.SOAP(groups, **kwargs)

    return make


@pytest.mark.parametrize("name, lr", [("quadratic", 0.01), ("rosenbrock", 0.002)])
def test_matches_pytorch_optimizer_in_float64(name, lr):
    problem = rp.as_float64(rp.PROBLEMS[name]())
    ours = rp.run_keras(SOAP(lr, weight_decay=0.5, exclude_from_weight_decay=["bias"]), problem)
    reference = tr.run_torch(torch_soap(lr=lr, kernel_decay=0.5), problem)
    no_decay = tr.run_torch(torch_soap(lr=lr), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, no_decay)


def test_matches_pytorch_optimizer_in_float32_above_the_noise():
    problem = rp.quadratic()
    ours = rp.run_keras(SOAP(0.01, epsilon=1e-2), problem)
    reference = tr.run_torch(torch_soap(lr=0.01, eps=1e-2), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)


def test_statistics_decay_and_refresh_frequency_match_in_float64():
    problem = rp.as_float64(rp.rosenbrock())
    ours = rp.run_keras(SOAP(0.002, shampoo_beta=0.99, precondition_frequency=5), problem)
    reference = tr.run_torch(torch_soap(lr=0.002, shampoo_beta=0.99, precondition_frequency=5), problem)
    default_beta = rp.run_keras(SOAP(0.002, precondition_frequency=5), problem)
    default_frequency = rp.run_keras(SOAP(0.002, shampoo_beta=0.99), problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, default_beta)
    rp.assert_differs(ours, default_frequency)


def test_epsilon_outside_the_uncorrected_square_root():
    problem = rp.as_float64(rp.quadratic(seed=1))
    ours = rp.run_keras(SOAP(0.01, epsilon=3.0), problem)
    reference = tr.run_torch(torch_soap(lr=0.01, eps=3.0), problem)
    small = tr.run_torch(torch_soap(lr=0.01, eps=1e-8), problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, small)


def _tiles(kernel):
    """A 5 x 4 kernel as the blocks of ``max_block_size=3``: rows [0:3], [3:5]; columns [0:2], [2:4]."""
    return [kernel[:3, :2], kernel[:3, 2:], kernel[3:, :2], kernel[3:, 2:]]


def test_blocked_kernel_equals_each_block_as_its_own_parameter():
    problem = tr.ShapedQuadratic({"kernel": (5, 4), "bias": (4,)}, seed=5, dtype="float64")
    ours = tr.run_keras_shaped(SOAP(0.01, max_block_size=3, weight_decay=0.1), problem)

    def to_torch(params):
        return [*_tiles(params["kernel"]), params["bias"]]

    def from_torch(arrays):
        a, b, c, d, bias = arrays
        return {"kernel": np.block([[a, b], [c, d]]), "bias": bias}

    reference = tr.run_torch_shaped(torch_soap(lr=0.01, kernel_decay=0.1, bias_decay=0.1), problem, to_torch, from_torch)
    whole = tr.run_keras_shaped(SOAP(0.01, weight_decay=0.1), problem)
    assert np.abs(reference[-1] - problem.x0).max() > 1e-2
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, whole)


def test_nd_kernel_equals_its_matrix_view_in_blocks():
    problem = tr.ShapedQuadratic({"kernel": (2, 2, 3, 4), "bias": (4,)}, seed=6, dtype="float64")
    ours = tr.run_keras_shaped(SOAP(0.01, max_block_size=4), problem)

    def to_torch(params):
        matrix = params["kernel"].reshape(12, 4)
        return [matrix[:4], matrix[4:8], matrix[8:], params["bias"]]

    def from_torch(arrays):
        return {"kernel": np.concatenate(arrays[:3]).reshape(2, 2, 3, 4), "bias": arrays[3]}

    reference = tr.run_torch_shaped(torch_soap(lr=0.01), problem, to_torch, from_torch)
    assert np.abs(reference[-1] - problem.x0).max() > 1e-2
    rp.assert_matches(ours, reference)


def test_float16_variables_keep_float32_statistics():
    """Against pytorch-optimizer on float16 parameters, with epsilon above float16 gradient noise.

    The float16 gradient itself carries noise of ~1e-3 of its size, far above
    the rotated gradient's near-zero entries at the second step; with
    ``epsilon=1e-2`` both implementations' float16 runs then wander 1e-2 to
    1e-1 from the float64 trajectory (chaotically, see the module docstring).
    With ``epsilon=0.1`` both stay within 6e-3 of it and of each other.
    """
    problem = tr.as_float16(rp.quadratic())
    optimizer = SOAP(0.01, epsilon=0.1)
    ours = rp.run_keras(optimizer, problem)
    reference = tr.run_torch(torch_soap(lr=0.01, eps=0.1), problem)
    assert ours.dtype == np.float16
    rp.assert_moved(reference.astype(np.float32), problem)
    rp.assert_matches(ours.astype(np.float32), reference.astype(np.float32), rtol=1e-2)
    slots = {v.name: v.dtype for v in optimizer.variables}
    assert slots["kernel_stat_left"] == "float32" and slots["kernel_basis_right"] == "float32"
    assert slots["kernel_velocity"] == "float32"


def test_basis_signs_do_not_change_the_rotation_round_trip():
    # float64 where Keras computes in it (TensorFlow); float32 elsewhere (its type promotion
    # turns float64 into float32 off TensorFlow), with a float32 tolerance.
    wide = keras.backend.result_type("float64", "float64") == "float64"
    dtype, atol = ("float64", 1e-12) if wide else ("float32", 1e-5)
    rng = np.random.default_rng(0)
    left = np.linalg.qr(rng.normal(size=(1, 1, 4, 4)))[0].astype(dtype)
    right = np.linalg.qr(rng.normal(size=(1, 1, 3, 3)))[0].astype(dtype)
    blocks = rng.normal(size=(1, 1, 4, 3)).astype(dtype)
    scale = rng.uniform(0.5, 2.0, size=(1, 1, 4, 3)).astype(dtype)
    signs_left, signs_right = np.array([1, -1, -1, 1.0], dtype), np.array([-1, 1, -1.0], dtype)

    def update(q_l, q_r):
        return np.asarray(project_back(np.asarray(project(blocks, q_l, q_r)) * scale, q_l, q_r))

    np.testing.assert_allclose(update(left, right), update(left * signs_left, right * signs_right), atol=atol)


def test_padding_diagonal_marks_the_padded_tail():
    np.testing.assert_array_equal(padding_diagonal(5, 2, 3), [[0, 0, 0], [0, 0, 1]])
    assert padding_diagonal(6, 2, 3) is None


@pytest.mark.parametrize(
    "bad", [{"precondition_frequency": 0}, {"max_block_size": 0}, {"shampoo_beta": 1.0}, {"beta_2": 1.0}]
)
def test_invalid_arguments(bad):
    with pytest.raises(ValueError, match="Received:"):
        SOAP(**bad)
