"""The batched decompositions of Shampoo and SOAP (``optimizers/_batched_linalg.py``).

On every backend: the eigendecompositions and QR factorizations of a batch equal
numpy's, matrix by matrix. On JAX's CPU backend (run natively by the backend lane):
the compiled Shampoo and SOAP steps hand LAPACK one matrix per call, the contract that
keeps jaxlib's batch-splitting kernels from deadlocking XLA's thread pool, and the
per-matrix results are the batched call's numbers.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from keras_trainkit import optimizers
from keras_trainkit.optimizers import _batched_linalg as batched_linalg

BATCH_SHAPE = (3, 2)


def _symmetric_batch(n=5, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=BATCH_SHAPE + (n, n))
    return (a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(n)).astype("float32")


def test_eigh_matches_numpy_per_matrix():
    stat = _symmetric_batch()
    values, vectors = (ops.convert_to_numpy(t) for t in batched_linalg.eigh(ops.convert_to_tensor(stat)))
    assert values.shape == BATCH_SHAPE + (5,) and vectors.shape == BATCH_SHAPE + (5, 5)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(stat.astype("float64")), rtol=1e-4, atol=1e-4)
    # Eigenvectors up to sign: A v = lambda v and V^T V = I, matrix by matrix.
    np.testing.assert_allclose(stat @ vectors, vectors * values[..., None, :], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.swapaxes(vectors, -1, -2) @ vectors, np.broadcast_to(np.eye(5), stat.shape),
                               atol=1e-5)


def test_qr_matches_numpy_per_matrix():
    x = np.random.default_rng(1).normal(size=BATCH_SHAPE + (6, 4)).astype("float32")
    q, r = (ops.convert_to_numpy(t) for t in batched_linalg.qr(ops.convert_to_tensor(x)))
    assert q.shape == BATCH_SHAPE + (6, 4) and r.shape == BATCH_SHAPE + (4, 4)
    np.testing.assert_allclose(q @ r, x, atol=1e-5)
    np.testing.assert_allclose(r, np.triu(r))
    reference_r = np.linalg.qr(x.astype("float64"))[1]  # the same R up to the signs of its rows
    np.testing.assert_allclose(np.abs(r), np.abs(reference_r), rtol=1e-4, atol=1e-5)


def test_single_matrix_passes_through():
    stat = _symmetric_batch()[0, 0]
    values, _ = batched_linalg.eigh(ops.convert_to_tensor(stat))
    np.testing.assert_allclose(ops.convert_to_numpy(values), np.linalg.eigvalsh(stat.astype("float64")),
                               rtol=1e-4, atol=1e-4)


def test_one_matrix_per_call_only_on_jax_cpu():
    expected = keras.backend.backend() == "jax"
    if expected:
        import jax

        expected = jax.default_backend() == "cpu"
    assert batched_linalg.one_matrix_per_call() is expected


def _jax_cpu():
    if not batched_linalg.one_matrix_per_call():
        pytest.skip("JAX on CPU only (the backend lane runs it): the other backends batch safely")
    import jax

    return jax


def test_jax_cpu_per_matrix_numbers_equal_the_batched_call():
    jax = _jax_cpu()
    stat = _symmetric_batch(8)
    mapped = jax.jit(batched_linalg.eigh)(stat)
    batched = jax.jit(ops.eigh)(stat)
    for per_matrix, whole in zip(mapped, batched):
        np.testing.assert_array_equal(np.asarray(per_matrix), np.asarray(whole))


@pytest.mark.parametrize("make", [
    lambda: optimizers.Shampoo(max_block_size=4),
    lambda: optimizers.SOAP(max_block_size=4),
], ids=["Shampoo", "SOAP"])
def test_jax_cpu_compiled_step_calls_lapack_one_matrix_at_a_time(make):
    """A batched LAPACK call (``num_batch_dims`` > 0) in the jitted step is what stalled
    ``model.fit`` with Shampoo on a 2-core machine; the compiled step must have none."""
    jax = _jax_cpu()
    variable = keras.Variable(np.ones((12, 10), "float32"))  # 3 x 3 blocks of 4 x 4 (padded)
    optimizer = make()
    optimizer.build([variable])
    step = jax.jit(optimizer.stateless_apply).lower(
        [v.value for v in optimizer.variables], [np.ones((12, 10), "float32")], [variable.value]
    ).as_text()
    calls = [line for line in step.splitlines() if "stablehlo.custom_call @lapack_" in line]
    assert calls, "the step should decompose its statistics with LAPACK"
    for call in calls:
        assert 'num_batch_dims = "0"' in call, call[:300]
