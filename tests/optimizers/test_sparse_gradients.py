"""Sparse gradients (``tf.IndexedSlices``) with repeated and absent rows equal the densified gradient.

One walk over every registered optimizer (wrappers included, each around
Keras's own ``Adam``, whose sparse update alone squares the rows before summing
them), every registered gradient transform and ``model.fit`` with an
``Embedding``. Each runs the same gradients twice, once as slices and once
densified with ``numpy.add.at`` in the test, for several steps in float32,
and the two must agree. The slices hold an index three times (rows summed
before any square or norm), an index seen only at the first step (an update
that keeps its own copy of the gradient, like Adan's, must see zeros there
afterwards) and indices absent at every step.

Also TensorFlow Addons' ``test_sparse_repeated_indices``: two rows of 0.1 at
one index give the same weights as one row of 0.2.

TensorFlow only: the other backends have no sparse gradients.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

if keras.backend.backend() != "tensorflow":
    pytest.skip("tf.IndexedSlices exist only on the TensorFlow backend", allow_module_level=True)

import tensorflow as tf  # noqa: E402

import keras_trainkit.optimizers as optimizers  # noqa: E402
from keras_trainkit.optimizers import transforms  # noqa: E402
from tests.conformance.spec import ClassSpec, collect_classes  # noqa: E402

ROWS, COLUMNS = 7, 4
STEPS = 6
# Step 0 alone sees row 5; rows 6 is never seen; each step repeats an index.
INDICES = [[5, 1, 1, 3, 1], [0, 2, 2], [4, 4, 4, 1], [2, 0, 0], [1, 3, 3, 3], [0, 4, 2, 4]]
RELATIVE_TOLERANCE = 2e-5

OPTIMIZER_SPECS = collect_classes("optimizers")
TRANSFORM_SPECS = collect_classes("transforms")
OPTIMIZERS = {
    name: cls
    for name, cls in sorted(optimizers.REGISTRY.classes.items())
    if issubclass(cls, keras.optimizers.Optimizer)
}
# Arguments that make the short run exercise what sparse rows could break.
OPTIMIZER_OVERRIDES = {
    "Shampoo": {"start_preconditioning_step": 1, "preconditioning_compute_steps": 2},
    "Lookahead": {"sync_period": 2},
    "LayerwiseLearningRate": {"multipliers": {"embeddings": 0.5}},
    # Momentum off inside (a config, so each run builds its own Adam).
    "ScheduleFree": {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.05, "beta_1": 0.0}}},
}
TRANSFORM_OVERRIDES = {
    "ClipByGlobalNorm": {"max_norm": 0.5},
    "ClipByValue": {"clip_value": 0.15},
    "AdaptiveGradientClipping": {"clipping": 0.05, "exclude": ()},
    "AutoClip": {"percentile": 50.0, "history_size": 4},
    "GradientNoise": {"eta": 0.01, "seed": 7},
}


def _values(step: int) -> np.ndarray:
    rng = np.random.default_rng(100 + step)
    return rng.normal(0.0, 0.1, size=(len(INDICES[step]), COLUMNS)).astype("float32")


def _kernel_gradient(step: int) -> np.ndarray:
    return np.random.default_rng(200 + step).normal(0.0, 0.1, size=(COLUMNS, 3)).astype("float32")


def _dense(indices, values, rows=ROWS) -> np.ndarray:
    out = np.zeros((rows,) + values.shape[1:], "float32")
    np.add.at(out, np.asarray(indices), values)
    return out


def _as_numpy(gradient) -> np.ndarray:
    """A gradient as a dense array, slices summed per index with numpy (not with the code under test)."""
    if isinstance(gradient, tf.IndexedSlices):
        rows = int(gradient.dense_shape[0])
        return _dense(gradient.indices.numpy(), gradient.values.numpy(), rows)
    return np.asarray(gradient)


def _gradients(step: int, sparse: bool):
    indices, values = INDICES[step], _values(step)
    if sparse:
        embedding = tf.IndexedSlices(tf.constant(values), tf.constant(indices), tf.constant([ROWS, COLUMNS]))
    else:
        embedding = tf.constant(_dense(indices, values))
    return [embedding, tf.constant(_kernel_gradient(step))]


def _variables():
    rng = np.random.default_rng(0)
    return [
        keras.Variable(rng.normal(size=(ROWS, COLUMNS)).astype("float32"), name="embeddings"),
        keras.Variable(rng.normal(size=(COLUMNS, 3)).astype("float32"), name="kernel"),
    ]


def _relative_error(ours, reference, start) -> float:
    moved = max(float(np.max(np.abs(r - s))) for r, s in zip(reference, start))
    error = max(float(np.max(np.abs(o - r))) for o, r in zip(ours, reference))
    return error / moved


def make_optimizer(name: str, arguments: str = "spec"):
    """``name`` built with its conformance-spec arguments or (``"defaults"``) its defaults.

    A wrapper gets Keras's ``Adam`` inside: alone, it squares slices before
    summing rows, so the wrapper must hand it dense gradients.
    """
    cls = OPTIMIZERS[name]
    kwargs = OPTIMIZER_SPECS.get(name, ClassSpec()).valid_kwargs() if arguments == "spec" else {}
    if issubclass(cls, optimizers.OptimizerWrapper):
        kwargs.update(OPTIMIZER_SPECS.get(name, ClassSpec()).valid_kwargs())
        kwargs["optimizer"] = keras.optimizers.Adam(0.05)
    kwargs.update(OPTIMIZER_OVERRIDES.get(name, {}))
    return cls(**kwargs)


# Each optimizer with its defaults and with its conformance arguments (weight decay
# schedules, exclusions: weight decay adds a dense term that hid the flaw in LARS).
OPTIMIZER_CASES = [
    pytest.param(name, arguments, id=f"{name}-{arguments}")
    for name, cls in OPTIMIZERS.items()
    for arguments in (("spec",) if issubclass(cls, optimizers.OptimizerWrapper) else ("defaults", "spec"))
]


def _apply(optimizer, grads, variables):
    """``optimizer.apply``; SAM first takes its ascent step, as a loop of one's own must."""
    if isinstance(optimizer, optimizers.SAM):
        optimizer.perturbation(grads, variables)
    optimizer.apply(grads, variables)


def _train(name: str, arguments: str, sparse: bool):
    optimizer = make_optimizer(name, arguments)
    variables = _variables()
    start = [np.asarray(v) for v in variables]
    for step in range(STEPS):
        _apply(optimizer, _gradients(step, sparse), variables)
    return [np.asarray(v) for v in variables], start


@pytest.mark.parametrize("name, arguments", OPTIMIZER_CASES)
def test_optimizer_sparse_equals_densified(name, arguments):
    sparse, start = _train(name, arguments, sparse=True)
    dense, _ = _train(name, arguments, sparse=False)
    assert all(np.all(np.isfinite(w)) for w in dense)
    assert _relative_error(sparse, dense, start) <= RELATIVE_TOLERANCE


@pytest.mark.parametrize("name, arguments", OPTIMIZER_CASES)
def test_optimizer_sparse_repeated_indices_tfa(name, arguments):
    """TF Addons' case: two rows of 0.1 at index 1 update like one row of 0.2, over 3 steps."""

    def run(values, indices):
        optimizer = make_optimizer(name, arguments)
        variable = keras.Variable([[1.0], [2.0]], name="embeddings")
        for _ in range(3):
            gradient = tf.IndexedSlices(tf.constant(values, shape=(len(indices), 1)), tf.constant(indices),
                                        tf.constant([2, 1]))
            _apply(optimizer, [gradient], [variable])
        return np.asarray(variable)

    repeated = run([0.1, 0.1], [1, 1])
    aggregated = run([0.2], [1])
    np.testing.assert_allclose(repeated, aggregated, rtol=1e-6, atol=0)
    assert not np.array_equal(aggregated, [[1.0], [2.0]])


TRANSFORMS = sorted(transforms.REGISTRY.classes.items())


def make_transform(name: str):
    cls = transforms.REGISTRY.classes[name]
    kwargs = TRANSFORM_SPECS.get(name, ClassSpec()).valid_kwargs()
    kwargs.update(TRANSFORM_OVERRIDES.get(name, {}))
    return cls(**kwargs)


@pytest.mark.parametrize("name", [name for name, _ in TRANSFORMS])
def test_transform_sparse_equals_densified(name):
    on_sparse, on_dense = make_transform(name), make_transform(name)
    variables = _variables()
    changed = False
    for step in range(STEPS):
        sparse_out = on_sparse(_gradients(step, sparse=True), variables)
        dense_out = on_dense(_gradients(step, sparse=False), variables)
        for got, want, given in zip(sparse_out, dense_out, _gradients(step, sparse=False)):
            got, want = _as_numpy(got), _as_numpy(want)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
            changed = changed or not np.allclose(want, np.asarray(given))
    for a, b in zip(on_sparse.variables, on_dense.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    if not isinstance(on_sparse, transforms.SkipTransform):  # skipping transforms pass finite gradients through
        assert changed, f"{name} never changed the gradients: the case tests nothing"


def test_skip_non_finite_skips_a_sparse_gradient_with_inf():
    chain = transforms.GradientChain([transforms.SkipNonFinite()])
    variables = _variables()
    gradients = _gradients(0, sparse=True)
    gradients[0] = tf.IndexedSlices(
        tf.constant([[np.inf, 0.0, 0.0, 0.0]], "float32"), tf.constant([2]), tf.constant([ROWS, COLUMNS])
    )
    updates = []
    chain.apply(gradients, variables, updates.append)
    assert updates == []
    chain.apply(_gradients(1, sparse=True), variables, updates.append)
    assert len(updates) == 1 and not isinstance(updates[0][0], tf.IndexedSlices)


@pytest.mark.parametrize("name, jit_compile", [("Yogi", False), ("Adan", True), ("TransformedOptimizer", False)])
def test_embedding_in_fit_equals_one_hot_model(name, jit_compile):
    """``model.fit`` with an Embedding (sparse gradient) trains like the same model as a one-hot matmul."""
    ids = np.array([[1, 1, 3], [5, 1, 1], [0, 2, 2], [4, 4, 1]], "int32")
    targets = np.random.default_rng(3).normal(size=(4, 3)).astype("float32")
    table = np.random.default_rng(4).normal(size=(ROWS, 3)).astype("float32")

    def one_hot_sum(x):
        return keras.ops.sum(keras.ops.one_hot(x, ROWS), axis=1)

    def trained(sparse: bool):
        inputs = keras.Input((3,), dtype="int32")
        if sparse:
            embedded = keras.layers.Embedding(ROWS, 3, name="embeddings")(inputs)
            outputs = keras.layers.Lambda(lambda e: keras.ops.sum(e, axis=1))(embedded)
        else:
            counts = keras.layers.Lambda(one_hot_sum)(inputs)
            outputs = keras.layers.Dense(3, use_bias=False, name="embeddings")(counts)
        model = keras.Model(inputs, outputs)
        model.layers[-1 if not sparse else 1].set_weights([table])
        model.compile(optimizer=make_optimizer(name, "defaults"), loss="mse", jit_compile=jit_compile)
        model.fit(ids, targets, batch_size=2, epochs=2, shuffle=False, verbose=0)
        return [model.get_weights()[0]]

    sparse, dense = trained(True), trained(False)
    assert _relative_error(sparse, dense, [table]) <= RELATIVE_TOLERANCE
