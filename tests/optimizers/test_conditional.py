"""``run_where``: a conditional update of variables, the same on every backend (JAX under ``jax.jit`` too)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from keras_trainkit.optimizers._conditional import run_where, select

ROOT = Path(__file__).resolve().parents[2]


def _update(a, b):
    def fn():
        a.assign(a + 1.0)
        b.assign(ops.convert_to_tensor(b) * 2.0)
    return fn


@pytest.mark.parametrize("condition, expected", [(True, (2.0, 6.0)), (False, (1.0, 3.0))])
def test_assignments_take_effect_only_where_the_condition_holds(condition, expected):
    a, b = keras.Variable(1.0), keras.Variable(3.0)
    run_where(ops.convert_to_tensor(condition), _update(a, b), [a, b])
    assert (float(a), float(b)) == expected


@pytest.mark.parametrize("condition, expected", [(True, (2.0, 6.0)), (False, (-1.0, 3.0))])
def test_otherwise_runs_on_the_starting_values(condition, expected):
    a, b = keras.Variable(1.0), keras.Variable(3.0)
    run_where(ops.convert_to_tensor(condition), _update(a, b), [a, b], otherwise=lambda: a.assign(a - 2.0))
    assert (float(a), float(b)) == expected


def test_select_reads_variables():
    v = keras.Variable([1.0, 2.0])
    np.testing.assert_array_equal(ops.convert_to_numpy(select(ops.convert_to_tensor(False), 0.0, v)), [1.0, 2.0])


_JAX_SCRIPT = """
import jax, keras
from keras import ops
from keras_trainkit.optimizers._conditional import run_where
a, b = keras.Variable(1.0), keras.Variable(3.0)

def step(values, condition):
    with keras.StatelessScope(state_mapping=list(zip([a, b], values))) as scope:
        def fn():
            a.assign(a + 1.0)
            b.assign(ops.convert_to_tensor(b) * 2.0)
        run_where(condition, fn, [a, b], otherwise=lambda: a.assign(a - 2.0))
    return [scope.get_current_value(v) for v in (a, b)]

jitted = jax.jit(step)
print([float(x) for x in jitted([1.0, 3.0], True)], [float(x) for x in jitted([1.0, 3.0], False)])

# A variable the update reads but does not assign is read as the enclosing scope maps it
# (the traced value under jit), not as stored.
c = keras.Variable(10.0)

def reading(values, condition):
    with keras.StatelessScope(state_mapping=list(zip([a, c], values))) as scope:
        run_where(condition, lambda: a.assign(a + c), [a])
    return scope.get_current_value(a)

print(float(jax.jit(reading)([1.0, 100.0], True)), float(jax.jit(reading)([1.0, 100.0], False)))

# An assignment to a variable missing from `variables` is refused, not lost.
def escaping(values, condition):
    with keras.StatelessScope(state_mapping=list(zip([a, c], values))):
        run_where(condition, lambda: c.assign(c + 1.0), [a])

try:
    jax.jit(escaping)([1.0, 100.0], True)
    print("no error")
except ValueError as error:
    print("ValueError", "missing from `variables`" in str(error))

# Eagerly, outside any scope: the variables themselves.
run_where(ops.convert_to_tensor(True), lambda: a.assign(a + c), [a])
print(float(a))

# Where no nested scope can be built (another Keras layout): select after running both.
import keras_trainkit._compat.keras as compat
compat.enclosing_stateless_values = lambda: None
jitted = jax.jit(step)
print([float(x) for x in jitted([1.0, 3.0], True)], [float(x) for x in jitted([1.0, 3.0], False)])
"""


@pytest.mark.backends
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_under_jit_keeps_the_taken_branch():
    environment = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run([sys.executable, "-c", _JAX_SCRIPT], cwd=ROOT, env=environment,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()[-5:]
    assert lines == ["[2.0, 6.0] [-1.0, 3.0]", "101.0 1.0", "ValueError True", "11.0", "[2.0, 6.0] [-1.0, 3.0]"]
