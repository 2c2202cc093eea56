"""Conformance ClassSpecs for the callbacks of issue 6 (early stopping, time budget,
SWA, training monitor, learning-curve diagnosis, gradient clipping)."""

from tests.conformance.spec import ClassSpec

CLASSES = {
    "TimeBudget": ClassSpec(valid={"seconds": 60.0}, invalid={"seconds": -1.0}),
    # start_epoch=0 so the two-epoch exercise really averages and swaps.
    "SWA": ClassSpec(valid={"start_epoch": 0}, invalid={"frequency": 0}),
    "LearningCurveDiagnosis": ClassSpec(invalid={"overfit_tolerance": -1.0}),
    "TrainingMonitor": ClassSpec(valid={"log_every_n_steps": 2}, invalid={"spike_factor": 0.5}),
    "SpikeDetection": ClassSpec(valid={"policy": "skip", "warmup": 2}, invalid={"window": 0}),
    "GradientClipping": ClassSpec(valid={"mode": "global_norm", "max_norm": 0.5},
                                  invalid={"max_norm": -1.0}),
}
