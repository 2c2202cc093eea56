"""A transform's ``carried_variables``: the state a step reads from earlier steps.

The rest of its variables are per-step statistics (``grad_norm``, ``clip_fraction``,
``AutoClip``'s ``threshold``, ``GradientNoise``'s ``noise_std``): each step writes them
from that step alone and no step reads them. The Trainer refuses
``keras.callbacks.BackupAndRestore`` only where carried state would be lost, so the split
must be right: here two equal chains run the same steps, one has its per-step variables
overwritten with garbage, and the next steps must still be equal in the update, the
carried state and the statistics they write. Marking a carried variable (a norm history,
a step count, a running mean) as per-step makes this fail.
"""

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers import transforms

CONFIGS = {
    "AdaptiveGradientClipping": {"clipping": 0.05},
    "AutoClip": {"percentile": 50.0, "history_size": 4},
    "ClipByGlobalNorm": {"max_norm": 1.0},
    "ClipByValue": {"clip_value": 0.3},
    "GradientCentralization": {},
    "GradientNoise": {"eta": 0.1, "seed": 3},
    "SkipLargeUpdates": {"threshold": 1.0, "warmup_steps": 2, "max_consecutive": 2},
    "SkipNonFinite": {"max_consecutive": 3},
}
# carried state of each (by variable name), as the module docstrings describe it
CARRIED = {
    "AdaptiveGradientClipping": [],
    "AutoClip": ["history", "count"],
    "ClipByGlobalNorm": [],
    "ClipByValue": [],
    "GradientCentralization": [],
    "GradientNoise": ["step", "seed_generator_state"],
    "SkipLargeUpdates": ["norm_mean", "norm_variance", "applied_steps", "skipped_steps", "consecutive_skips"],
    "SkipNonFinite": ["skipped_steps", "consecutive_skips"],
}


def test_every_registered_transform_is_covered():
    assert sorted(transforms.REGISTRY.classes) == sorted(CONFIGS) == sorted(CARRIED)


def _gradients(step):
    """Gradients whose norms jump (clipping and the large-update rule act) and, at step 5, a NaN."""
    rng = np.random.default_rng(step)
    scale = 5.0 if step % 3 == 0 else 0.2
    kernel = rng.normal(size=(3, 2)).astype("float32") * scale
    if step == 5:
        kernel[0, 0] = np.nan
    return [keras.ops.convert_to_tensor(kernel), keras.ops.convert_to_tensor(rng.normal(size=(2,)).astype("float32"))]


def _chain(name):
    weights = [keras.Variable(np.ones((3, 2), "float32")), keras.Variable(np.zeros((2,), "float32"))]
    chain = transforms.GradientChain([transforms.get(name, **CONFIGS[name])])
    chain.build(weights)
    return chain, weights


def _step(chain, weights, step):
    def update(grads):
        for weight, grad in zip(weights, grads):
            weight.assign_sub(0.1 * grad)

    chain.apply(_gradients(step), weights, update)


def _values(variables):
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_per_step_statistics_are_not_read_by_the_next_step(name):
    (first, first_weights), (second, second_weights) = _chain(name), _chain(name)
    [transform] = first.transforms
    assert sorted(v.name for v in transform.carried_variables) == sorted(CARRIED[name])
    for step in range(3):
        _step(first, first_weights, step)
        _step(second, second_weights, step)
    [overwritten] = second.transforms
    for variable in overwritten.variables:
        if id(variable) not in {id(v) for v in overwritten.carried_variables}:
            variable.assign(keras.ops.full(variable.shape, 123, dtype=variable.dtype))
    for step in range(3, 9):
        _step(first, first_weights, step)
        _step(second, second_weights, step)
        for left, right in zip(_values(first_weights + transform.variables),
                               _values(second_weights + overwritten.variables)):
            np.testing.assert_array_equal(left, right, err_msg=f"{name}, step {step}")
