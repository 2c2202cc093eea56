"""Every registered optimizer in ``model.fit`` on the current Keras backend: numbers to compare across backends.

Backend-neutral (``keras`` and ``numpy`` only), so ``tests/optimizers/test_backends.py``
runs it in a subprocess per backend::

    KERAS_BACKEND=jax python -m tests.optimizers.backend_fit results.json [--reference] [CASE ...]

For each case (every optimizer class in ``keras_trainkit.optimizers.REGISTRY``,
built from its conformance spec, ``SAM`` through ``SAMModel``, plus the
variants in ``_extra_cases``) it trains the same small model from the same
weights on the same batches for ``EPOCHS * BATCHES`` = 104 updates with the
backend's default ``jit_compile`` (XLA on JAX), then evaluates, predicts,
saves to ``.keras``, loads, compares the optimizer's slots and trains both
copies one more epoch. On JAX it also checks ``stateless_apply`` under
``jax.jit`` against ``apply``, and runs the ``EAGER_CASES`` with
``jit_compile=False``. A failure is recorded as text (the case goes on to the
next), so one run reports every case.
"""

from __future__ import annotations

import json
import sys
import traceback

import keras
import numpy as np

import keras_trainkit.optimizers as optimizers
from tests.conformance.spec import ClassSpec, collect_classes

EPOCHS = 13
BATCH = 8
BATCHES = 8  # 64 samples: 104 updates in all
SPECS = collect_classes("optimizers")

# Cases whose model is wrapped: SAM needs the second gradient SAMModel's train_step computes.
MODEL_WRAPPERS = {"SAM": optimizers.SAMModel}
# Cases also run on JAX with jit_compile=False: those with control flow (cond, where on the
# step count) or their own train_step; an eager JAX epoch costs more than the whole jitted fit.
EAGER_CASES = {"Lookahead", "Prodigy", "SAM", "Shampoo", "RAdam-accumulation"}
# Arguments replaced for the cross-backend comparison, with the reason.
OVERRIDES = {
    # A relative ridge of 1e-6 makes the inverse 4th roots amplify float32 round-off of
    # eigh (which differs between backends) to ~3e-4 of the weights after 104 steps.
    "Shampoo": {"epsilon": 1e-4},
    # Blocks of 4 give the 8 x 1 output kernel 4 x 4 left statistics of rank one at the first
    # update: eigh's basis of their 3-dimensional null space is arbitrary and differs between
    # backends (as between two LAPACK builds), and so do the trajectories (3e-3 after 104
    # updates). With blocks of 2 every null space is at most one-dimensional: its basis vector
    # is fixed up to a sign, and signs cancel in SOAP's rotations.
    "SOAP": {"max_block_size": 2},
}


def _extra_cases():
    """Variants beyond each class's conformance spec: other code paths of the same classes."""
    return {
        "Shampoo-newton": lambda: optimizers.Shampoo(
            learning_rate=0.01, max_block_size=4, preconditioning_compute_steps=2, epsilon=1e-4,
            inverse_root="newton", newton_iterations=30,
        ),
        "Lookahead-RAdam": lambda: optimizers.Lookahead(optimizers.RAdam(0.01), sync_period=3),
        "LayerwiseLearningRate-Yogi": lambda: optimizers.LayerwiseLearningRate(
            optimizers.Yogi(0.01), {"*kernel": 0.3}  # the model's kernels; the float64 check's bare "kernel"
        ),
        "TransformedOptimizer-clipping": lambda: optimizers.TransformedOptimizer(
            keras.optimizers.Adam(0.01),
            [
                optimizers.ClipByGlobalNorm(0.5),
                optimizers.AdaptiveGradientClipping(0.05),
                optimizers.GradientCentralization(),
                optimizers.ClipByValue(0.3),
            ],
        ),
        # Not with use_ema: on JAX, Keras 3.15.1 fails to save any optimizer with use_ema=True
        # after fit + evaluate/predict (keras.optimizers.Adam too: "Array has been deleted").
        "RAdam-accumulation": lambda: optimizers.RAdam(0.01, gradient_accumulation_steps=2),
    }


def cases() -> dict:
    """``{case name: zero-argument factory of a fresh optimizer}``."""
    found = {}
    for name, cls in sorted(optimizers.REGISTRY.classes.items()):
        if not issubclass(cls, keras.optimizers.Optimizer):
            continue

        def make(cls=cls, name=name):
            kwargs = SPECS.get(name, ClassSpec()).valid_kwargs()
            kwargs.update(OVERRIDES.get(name, {}))
            return cls(**kwargs)

        found[name] = make
    found.update(_extra_cases())
    return found


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * BATCHES, 4)).astype("float32")
    y = (np.tanh(x @ rng.normal(size=(4, 1))) + 0.1 * rng.normal(size=(len(x), 1))).astype("float32")
    weights = [
        (0.5 * rng.normal(size=(4, 8))).astype("float32"),
        np.zeros(8, "float32"),
        (0.5 * rng.normal(size=(8, 1))).astype("float32"),
        np.zeros(1, "float32"),
    ]
    return x, y, weights


def model(weights, wrapper=None):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="tanh", name="hidden")(inputs)
    built = keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))
    built.set_weights(weights)
    return built if wrapper is None else wrapper(built)


def _arrays(values):
    return [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in values]


def fit_case(make, directory, save=True, wrapper=None) -> dict:
    """Train, evaluate, predict, save, load and resume one case; the numbers as JSON-able lists.

    ``save=False`` (the TensorFlow reference, whose save/load the conformance
    suite checks) stops after ``predict``.
    """
    x, y, weights = data()
    trained = model(weights, wrapper)
    trained.compile(optimizer=make(), loss="mse")
    after_first = []
    remember = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: after_first.append(_arrays(trained.get_weights())) if epoch == 0 else None
    )
    history = trained.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[remember])
    result = {
        "loss": history.history["loss"],
        "weights_epoch_1": after_first[0],
        "weights": _arrays(trained.get_weights()),
        "evaluate": float(trained.evaluate(x, y, batch_size=BATCH, verbose=0)),
        "predict": _arrays([trained.predict(x, batch_size=BATCH, verbose=0)])[0],
    }
    if not save:
        return result
    path = f"{directory}/model.keras"
    trained.save(path)
    loaded = keras.models.load_model(path)
    slots = zip(trained.optimizer.variables, loaded.optimizer.variables)
    result["slots_restored"] = len(trained.optimizer.variables) == len(loaded.optimizer.variables) and all(
        np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)) for a, b in slots
    )
    trained.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    result["resume_difference"] = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(trained.get_weights(), loaded.get_weights())
    )
    return result


# Cases with no one-gradient ``stateless_apply`` to compare, and why.
STATELESS_EXEMPT = {
    "SAM": "SAM's update needs a second gradient at the perturbed weights (SAMModel's second "
           "pass); applied with one gradient it refuses by design (sam.py, issue 17)",
}


def eager_epoch(make, wrapper=None) -> list:
    """The weights after one epoch with ``jit_compile=False``."""
    x, y, weights = data()
    trained = model(weights, wrapper)
    trained.compile(optimizer=make(), loss="mse", jit_compile=False)
    trained.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    return _arrays(trained.get_weights())


def stateless_difference(make, steps: int = 12) -> float:
    """JAX: largest difference between ``stateless_apply`` under ``jax.jit`` and ``apply``, same gradients."""
    import jax

    _, _, weights = data()
    rng = np.random.default_rng(5)
    gradients = [[rng.normal(size=w.shape).astype("float32") for w in weights] for _ in range(steps)]

    stateful = model(weights)
    optimizer = make()
    optimizer.build(stateful.trainable_variables)
    for grads in gradients:
        optimizer.apply(grads, stateful.trainable_variables)

    stateless = model(weights)
    twin = make()
    twin.build(stateless.trainable_variables)
    step = jax.jit(twin.stateless_apply)
    params = [v.value for v in stateless.trainable_variables]
    state = [v.value for v in twin.variables]
    for grads in gradients:
        params, state = step(state, grads, params)
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(params, [v.value for v in stateful.trainable_variables])
    )


def failure_record(error: Exception) -> dict:
    """A case's record when it raised (inside ``except``): the run reports it and goes on."""
    return {"ok": False, "error": f"{type(error).__name__}: {error}"[:600],
            "traceback": traceback.format_exc()[-3000:]}


def relative_difference(ours, reference) -> float:
    """max |ours - reference| over a list of arrays, relative to the largest |reference| entry."""
    ours = [np.asarray(a, "float64") for a in ours]
    reference = [np.asarray(a, "float64") for a in reference]
    scale = max(float(np.max(np.abs(r))) for r in reference)
    return max(float(np.max(np.abs(o - r))) for o, r in zip(ours, reference)) / scale


def run(directory, names=None, reference=False) -> dict:
    """Every case (or ``names``): ``{name: {"ok": bool, ...numbers or "error"}}``.

    ``reference=True``: only the numbers other backends are compared with (no
    save/load, no JAX extras).
    """
    results = {}
    for name, make in cases().items():
        if names and name not in names:
            continue
        record = {}
        try:
            wrapper = MODEL_WRAPPERS.get(name)
            record.update(fit_case(make, directory, save=not reference, wrapper=wrapper))
            if keras.backend.backend() == "jax" and not reference:
                if name in EAGER_CASES:
                    record["weights_epoch_1_eager"] = eager_epoch(make, wrapper)
                if name not in STATELESS_EXEMPT:
                    record["stateless_difference"] = stateless_difference(make)
            record["ok"] = True
        except Exception as error:  # noqa: BLE001 - reported per case, the run goes on
            record = failure_record(error)
        results[name] = record
    return results


def main(argv):
    """``python -m tests.optimizers.backend_fit OUTPUT.json [--reference] [CASE ...]``."""
    import tempfile

    reference = "--reference" in argv
    output, *names = [arg for arg in argv if arg != "--reference"]
    with tempfile.TemporaryDirectory() as directory:
        results = run(directory, set(names) or None, reference=reference)
    with open(output, "w") as handle:
        json.dump({"backend": keras.backend.backend(), "results": results}, handle)


if __name__ == "__main__":
    main(sys.argv[1:])
