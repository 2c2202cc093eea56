"""A grid fuzz over the constructor of every class in every registry.

For each public class (every family in ``keras_trainkit.utils.families()``),
each constructor argument in turn is set to each hostile value of ``HOSTILE``
(the other arguments keep the conformance spec's valid values). A case passes
when the constructor refuses the value with ``ValueError``/``TypeError``, or
accepts it and the object then works: a few steps of a tiny problem
(optimizers, transforms), its values over a range of steps (schedules), a
call (initializers, regularizers, penalties), or the callback protocol of two
short epochs (callbacks) give finite numbers and raise nothing. Any other
exception, a case that runs past ``CASE_SECONDS`` (a hang), a failure after
acceptance or a non-finite result is a finding.

"Sane" magnitudes only are exercised after acceptance (``EXERCISED``):
values such as ``1e38`` must be refused or accepted cleanly, but a learning
rate, factor or weight decay of ``1e38`` is the user's choice and may well
overflow. Run as a script to print the counts per family:

    python tests/conformance/test_constructor_fuzz.py
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import keras
import numpy as np
import pytest

CASE_SECONDS = 2.0

_OBJECT = object()
HOSTILE = (
    0, 2, -1, 10**6, 2**63, 10**30,
    0.5, -0.5, 2.0, 1e-300, 1e-45, 1.0 - 1e-12, 1e38, 1e300, math.inf, math.nan,
    True, None, "abc", [], {}, _OBJECT,
)


def _sane(value) -> bool:
    """Whether an accepted value is exercised: not a huge magnitude a user chose on purpose."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return abs(value) <= 10**6


@dataclass
class Finding:
    family: str
    name: str
    argument: str
    value: object
    kind: str  # "crash", "hang", "late" (accepted, failed on use), "non-finite"
    detail: str

    def __str__(self):
        return f"{self.family}.{self.name}({self.argument}={self.value!r}): {self.kind}: {self.detail}"


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` swallows it."""


@contextlib.contextmanager
def _deadline(seconds):
    def fire(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _in_fresh_folder():
    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(previous)


# ------------------------------------------------------------------ exercises
def _all_finite(values) -> bool:
    arrays = (np.asarray(keras.ops.convert_to_numpy(v), dtype="float64") for v in values)
    return all(np.all(np.isfinite(a)) for a in arrays)


def _quadratic_steps(optimizer, steps=2):
    """A few steps of ``0.5 * ||w - t||^2`` on a matrix and a bias; returns the weights."""
    rng = np.random.default_rng(0)
    target = [rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(3,)).astype("float32")]
    weights = [keras.Variable(np.zeros((4, 3), "float32"), name="kernel"),
               keras.Variable(np.zeros((3,), "float32"), name="bias")]
    for _ in range(steps):
        grads = [keras.ops.convert_to_tensor(w.numpy() - t) for w, t in zip(weights, target)]
        if callable(getattr(optimizer, "perturbation", None)):  # SAM: its two-pass hook
            optimizer.perturbation(grads, weights)
        optimizer.apply(grads, weights)
    return weights


def _exercise_optimizer(optimizer):
    return _all_finite(_quadratic_steps(optimizer))


def _exercise_transform(transform):
    from keras_trainkit.optimizers import TransformedOptimizer

    return _all_finite(_quadratic_steps(TransformedOptimizer(keras.optimizers.SGD(0.01), [transform])))


def _exercise_schedule(schedule):
    values = [schedule(step) for step in (0, 1, 2, 7, 100, 10**4, 10**6)]
    return _all_finite(values) and all(float(keras.ops.convert_to_numpy(v)) >= 0 for v in values)


def _exercise_initializer(initializer):
    return _all_finite([initializer((4, 3), dtype="float32")])


def _exercise_regularizer(regularizer):
    weight = keras.Variable(np.linspace(-1, 1, 12, dtype="float32").reshape(4, 3), name="kernel")
    return _all_finite([regularizer(weight)])


def _tiny_model():
    """Dense-BatchNorm-Dense: the BatchNorm makes SWA read its ``bn_data`` at the end."""
    inputs = keras.Input((4,))
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(5, activation="tanh")(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden))


def _exercise_penalty(penalty):
    x = np.linspace(-1, 1, 16, dtype="float32").reshape(4, 4)
    y = np.array([[0.0], [1.0], [2.0], [1.0]], "float32")  # class ids, or targets broadcast to (4, 3)
    return _all_finite([penalty(_tiny_model(), x, y, training=True)])


def _exercise_callback(callback):
    """Drive the callback through two short epochs of the Keras callback protocol.

    No training step runs (tracing one per case would take the whole budget):
    the hooks see a compiled model with a built optimizer and made-up logs. A
    ``ValueError``/``TypeError`` within the first epoch counts as a refusal:
    some arguments (a monitored metric's direction, an optimizer attribute)
    first become checkable there, as in Keras's own callbacks.
    """
    model = _tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.optimizer.build(model.trainable_variables)
    callbacks = keras.callbacks.CallbackList([callback], model=model, epochs=2, steps=2, verbose=0)
    logs = {"loss": 0.5, "val_loss": 0.6, "accuracy": 0.5, "val_accuracy": 0.4}
    for epoch in range(2):
        try:
            if epoch == 0:
                callbacks.on_train_begin()
            callbacks.on_epoch_begin(epoch)
            for batch in range(2):
                callbacks.on_train_batch_begin(batch)
                callbacks.on_train_batch_end(batch, {"loss": 0.5 - 0.1 * epoch})
            callbacks.on_epoch_end(epoch, dict(logs))
        except (ValueError, TypeError):
            if epoch == 0:
                return True
            raise
        if model.stop_training:
            break
    callbacks.on_train_end()
    return _all_finite(model.get_weights())


EXERCISES = {
    "optimizers": _exercise_optimizer,
    "transforms": _exercise_transform,
    "schedules": _exercise_schedule,
    "initializers": _exercise_initializer,
    "regularizers": _exercise_regularizer,
    "penalties": _exercise_penalty,
    "callbacks": _exercise_callback,
}


# ---------------------------------------------------------------------- grid
def _families():
    from keras_trainkit.utils import families

    importlib.import_module("keras_trainkit.tuning")
    return families()


def _spec(family, name):
    module = importlib.import_module(f"tests.conformance.specs.{family}")
    return module.FAMILY.spec_for(name)


def _arguments(cls) -> list[str]:
    parameters = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in parameters
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _is_default(cls, spec, argument, value) -> bool:
    """Whether ``value`` is what the valid instance already has (nothing new to exercise)."""
    valid = spec.valid_kwargs()
    default = valid.get(argument, inspect.signature(cls.__init__).parameters[argument].default)
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # noqa: BLE001 - incomparable values differ
        return False


def _run(fn, seconds=CASE_SECONDS):
    """``("ok", result)``, ``("refused", error)``, ``("error", error)`` or ``("hang", None)``."""
    try:
        with _deadline(seconds):
            return "ok", fn()
    except _Timeout:
        return "hang", None
    except (ValueError, TypeError) as error:
        return "refused", error
    except Exception as error:  # noqa: BLE001 - any other exception is a finding
        return "error", error


def _use(family, cls, kwargs):
    """Build ``cls(**kwargs)`` and exercise it: ``None`` when fine, else ``(kind, detail)``.

    A refusal by the constructor is fine here (a combination of individually
    accepted values may break a constraint between arguments).
    """
    outcome, instance = _run(lambda: cls(**kwargs))
    if outcome == "hang":
        return "hang", f"constructor ran past {CASE_SECONDS} s"
    if outcome == "error":
        return "crash", f"{type(instance).__name__}: {instance}"[:200]
    if outcome == "refused":
        return None
    with _in_fresh_folder():  # arguments such as state_path="abc" write files
        used, finite = _run(lambda: EXERCISES[family](instance))
    if used == "hang":
        return "hang", f"first use ran past {CASE_SECONDS} s"
    if used in ("refused", "error"):
        return "late", f"accepted, then {type(finite).__name__} on use: {finite}"[:200]
    if not finite:
        return "non-finite", "accepted, then non-finite values on use"
    return None


def fuzz_class(family: str, name: str, cls) -> tuple[int, list[Finding]]:
    """Run the grid on one class; returns ``(cases run, findings)``.

    First every (argument, hostile value) pair is given to the constructor
    alone. The accepted pairs (sane, not the valid instance's own value) are
    then exercised in rounds: round ``r`` sets every argument to its ``r``-th
    accepted value at once, so a class needs about as many exercises as its
    most permissive argument has accepted values, not their sum. A round that
    fails is re-run one pair at a time to name the culprit (or reported as a
    combination when no single pair fails).
    """
    spec = _spec(family, name)
    findings, cases = [], 0
    accepted: dict[str, list] = {}
    for argument in _arguments(cls):
        for value in HOSTILE:
            cases += 1
            outcome, result = _run(lambda: cls(**{**spec.valid_kwargs(), argument: value}))
            if outcome == "hang":
                findings.append(Finding(family, name, argument, value, "hang",
                                        f"constructor ran past {CASE_SECONDS} s"))
            elif outcome == "error":
                findings.append(Finding(family, name, argument, value, "crash",
                                        f"{type(result).__name__}: {result}"[:200]))
            elif outcome == "ok" and _sane(value) and not _is_default(cls, spec, argument, value):
                accepted.setdefault(argument, []).append(value)
    rounds = max((len(values) for values in accepted.values()), default=0)
    for r in range(rounds):
        pairs = {arg: values[r] for arg, values in accepted.items() if r < len(values)}
        if _use(family, cls, {**spec.valid_kwargs(), **pairs}) is None:
            continue
        alone = [(arg, value, _use(family, cls, {**spec.valid_kwargs(), arg: value}))
                 for arg, value in pairs.items()]
        failed = [(arg, value, problem) for arg, value, problem in alone if problem is not None]
        if not failed:
            problem = _use(family, cls, {**spec.valid_kwargs(), **pairs})
            failed = [("+".join(pairs), tuple(pairs.values()), problem)] if problem else []
        findings.extend(Finding(family, name, arg, value, *problem) for arg, value, problem in failed)
    return cases, findings


CASES = [
    pytest.param(family, name, id=f"{family}.{name}")
    for family, registry in sorted(_families().items())
    for name in sorted(registry.classes)
]


@pytest.mark.parametrize("family,name", CASES)
def test_constructor_grid_refuses_cleanly_or_works(family, name):
    cls = _families()[family].classes[name]
    start = time.monotonic()
    _, findings = fuzz_class(family, name, cls)
    elapsed = time.monotonic() - start
    assert not findings, "\n".join(str(f) for f in findings)
    assert elapsed < 20, f"the grid over {name} took {elapsed:.1f} s"


def main():
    keras.utils.set_random_seed(0)
    totals = Counter()
    per_family = {}
    for family, registry in sorted(_families().items()):
        counts = Counter()
        for name, cls in sorted(registry.classes.items()):
            start = time.monotonic()
            cases, findings = fuzz_class(family, name, cls)
            counts["cases"] += cases
            counts.update(f.kind for f in findings)
            for finding in findings:
                print(finding)
            print(f"# {family}.{name}: {cases} cases, {len(findings)} findings, "
                  f"{time.monotonic() - start:.1f} s", file=sys.stderr)
        per_family[family] = counts
        totals.update(counts)
    print("\nfamily        cases  crash  hang  late  non-finite")
    for family, counts in [*per_family.items(), ("total", totals)]:
        print(f"{family:12s} {counts['cases']:6d} {counts['crash']:6d} {counts['hang']:5d} "
              f"{counts['late']:5d} {counts['non-finite']:11d}")


if __name__ == "__main__":
    main()
