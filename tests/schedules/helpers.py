"""Shared helpers of the schedule tests: evaluate a schedule, compare against a reference."""

from __future__ import annotations

import numpy as np

# Relative tolerance of every reference comparison. The schedules compute in
# float32 but are written so that no step loses more than a few float32 roundings
# *relative to its own value* (interpolations are sums of non-negative terms, and
# "fraction left" is formed from a difference of step counts), so even values
# near 0 meet it. ``ATOL`` only absorbs a reference that is exactly 0 where ours is
# 0 plus rounding residue (or the reverse); it is 9 orders of magnitude below
# the smallest learning rate the tests use.
RTOL = 1e-6
ATOL = 1e-15


def values(schedule, steps) -> np.ndarray:
    """The schedule at ``0 .. steps - 1``, called once on the whole vector."""
    out = np.asarray(schedule(np.arange(steps, dtype="int64")), dtype="float64")
    assert out.shape == (steps,), out.shape
    return out


def assert_matches(ours, reference, *, rtol: float = RTOL, atol: float = ATOL):
    """``ours`` (float32 values) agrees with a float64 ``reference`` step for step."""
    reference = np.asarray(reference, dtype="float64")
    ours = np.asarray(ours, dtype="float64")
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=atol)


def torch_learning_rates(make_scheduler, steps: int, learning_rate: float) -> np.ndarray:
    """The learning rate torch uses for each of ``steps`` optimizer updates.

    torch's convention: the scheduler is built before training (its
    ``last_epoch`` becomes 0), each update reads ``param_groups[0]["lr"]``, then
    ``optimizer.step()`` and ``scheduler.step()`` run. So the learning rate of the
    k-th update (k from 0) is the scheduler's value at ``last_epoch = k``, which
    is Keras's ``schedule(optimizer.iterations)`` with ``iterations = k``.
    """
    import torch

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=learning_rate, momentum=0.9)
    scheduler = make_scheduler(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.asarray(rates, dtype="float64")
