"""Per-class conformance overrides for the gradient transforms: an invalid value of each one's main argument."""

from tests.conformance.spec import ClassSpec

CLASSES = {
    "ClipByGlobalNorm": ClassSpec(invalid={"max_norm": -1.0}),
    "ClipByValue": ClassSpec(invalid={"clip_value": 0.0}),
    "AdaptiveGradientClipping": ClassSpec(valid={"clipping": 0.05, "exclude": ["out"]}, invalid={"clipping": -0.01}),
    "AutoClip": ClassSpec(valid={"percentile": 10.0, "history_size": 8}, invalid={"percentile": 150.0}),
    "SkipNonFinite": ClassSpec(invalid={"max_consecutive": 0}),
    "SkipLargeUpdates": ClassSpec(valid={"threshold": 4.0, "warmup_steps": 2}, invalid={"threshold": 0.0}),
    "GradientNoise": ClassSpec(valid={"eta": 0.01, "seed": 0}, invalid={"eta": -1.0}),
}
