"""Batched ``eigh`` and ``qr`` that cannot deadlock JAX's CPU runtime.

Shampoo and SOAP decompose a batch of small matrices (one per block) at every
refresh. On JAX's CPU backend, jaxlib 0.10's LAPACK kernels split a batch across
XLA's intra-op thread pool and then block a pool thread until the pieces are done
(``jax::ParallelBatchMap``, waiting on an ``absl::BlockingCounter``). XLA runs
independent operations concurrently on that same pool, so when as many batched
decompositions start at once as the pool has threads (the left and the right
statistics of a kernel, on a 2-core machine), every pool thread waits for work that
no thread is free to run, and the step never finishes: no error, 0% CPU (seen as
``model.fit`` with ``Shampoo`` stalling at its first preconditioner refresh; the
native stacks showed both ``tf_XLAEigen`` threads in ``ParallelBatchMap``).

With one matrix per call the kernel does no batch split and never waits on the
pool (checked in ``gdb``: the kernel schedules no pool task for a single matrix),
so here, on JAX's CPU backend only, the batch is flattened and decomposed one
matrix at a time by ``keras.ops.map`` (``lax.map``: a loop inside the compiled
step). The numbers are those of the batched call: each matrix goes through the
same LAPACK routine. Everywhere else (TensorFlow, PyTorch, JAX on a GPU, where the
batched solvers are fast and safe) the batched call is used as is.
"""

from __future__ import annotations

import keras
from keras import ops


def one_matrix_per_call() -> bool:
    """Whether decompositions must be issued one matrix at a time (JAX on CPU)."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


def _per_matrix(decomposition, x):
    """``decomposition`` applied to every matrix of ``x`` (``(..., m, n)``), one per call."""
    batch_shape = tuple(x.shape[:-2])
    if not batch_shape:
        return decomposition(x)
    flat = ops.reshape(x, (-1,) + tuple(x.shape[-2:]))
    results = ops.map(decomposition, flat)
    return tuple(ops.reshape(r, batch_shape + tuple(r.shape[1:])) for r in results)


def eigh(x):
    """``keras.ops.eigh`` of a batch of symmetric matrices ``(..., n, n)``:
    ``(eigenvalues (..., n) ascending, eigenvectors (..., n, n) as columns)``."""
    if one_matrix_per_call():
        return _per_matrix(ops.eigh, x)
    return ops.eigh(x)


def qr(x):
    """``keras.ops.qr`` (reduced) of a batch of matrices ``(..., m, n)``: ``(q, r)``."""
    if one_matrix_per_call():
        return _per_matrix(ops.qr, x)
    return ops.qr(x)
