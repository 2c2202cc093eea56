"""Conformance ClassSpecs for the callbacks of issue 6 (early stopping, time budget,
SWA, training monitor, learning-curve diagnosis, gradient clipping)."""

from tests.conformance.spec import ClassSpec

CLASSES = {
    "TimeBudget": ClassSpec(valid={"seconds": 60.0}, invalid={"seconds": -1.0}),
}
