"""Run one execution of a KerasTuner trial in a fresh subprocess.

Models, graphs and allocator caches of a trial die with its process, so the
search process's host memory stays flat and a GPU's memory is returned after
every execution (TensorFlow never gives GPU memory back inside a process).

The child is started with ``multiprocessing``'s ``spawn`` method (a new
interpreter, nothing inherited but the arguments). It receives a copy of the
tuner (without its oracle), the trial and the execution's ``fit`` arguments
as planned by :class:`~keras_trainkit.tuning.trial_plan.TrialRun`, and runs
KerasTuner's own build-and-fit on them, so the tuner's checks and overrides
apply there as in-process: ``max_model_size``, the ``optimizer``/``loss``/
``metrics`` overrides, Hyperband's epochs and weights of the earlier round,
a user's ``Tuner`` subclass's own ``_build_and_fit_model``, and the tuner's
per-epoch hooks (``on_epoch_end`` ...), which run in the child.

Each epoch's logs go through a pipe to the search's process, which calls
``oracle.update_trial`` and answers with the trial's status, so pruning works.
Tuner, hypermodel, callbacks and data travel pickled, so they must be
picklable; a ``tf.distribute`` strategy cannot cross and is refused.

The child dies with its parent: on Linux the kernel kills it when the search
process dies (``PR_SET_PDEATHSIG``); elsewhere a watchdog thread ends it
within half a second; and its epoch checkpoint writes nothing once the parent
is gone, so a resumed search never finds a stale child writing into the
trial it redoes.
"""

from __future__ import annotations

import copy
import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback

import keras
import keras_tuner
from keras_tuner import errors

from keras_trainkit._compat import keras_tuner as kt_compat
from keras_trainkit.tuning.trial_plan import quiet_round_continuation

# How often the parent checks that the child is alive while waiting.
_POLL_SECONDS = 1.0
# How often a child checks that its parent is alive (where the kernel cannot tell it).
_WATCHDOG_SECONDS = 0.5
# How long the parent waits for a child that reported its result to exit.
_EXIT_WAIT_SECONDS = 60


class _ParentOracle:
    """The oracle as an isolated trial sees it: ``update_trial`` asks the search's process."""

    def __init__(self, connection):
        self.connection = connection

    def update_trial(self, trial_id, metrics, step=0):
        self.connection.send(("update_trial", trial_id, metrics, step))
        return self.connection.recv()


class _OracleOutOfReach:
    """Stands in for the oracle in the child's copy of the tuner: KerasTuner's
    build-and-fit reads only its ``objective``."""

    def __init__(self, objective):
        self.objective = objective

    def __getattr__(self, name):
        raise AttributeError(f"The oracle's {name!r} is not reachable from an isolated trial's "
                             "process; only `objective` is. Run the trial in-process "
                             "(isolate_trials=False) to use it.")


def _die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` ends."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(_WATCHDOG_SECONDS)

    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=watch, name="trial-watchdog", daemon=True).start()


def _child_main(connection, payload: bytes, parent_pid: int) -> None:
    """Entry point of the trial process."""
    _die_with_parent(parent_pid)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        job = pickle.loads(payload)
        plan = job["plan"]
        plan.reporter.oracle = _ParentOracle(connection)
        plan.checkpoint.parent_pid = parent_pid
        with quiet_round_continuation(job["trial"]):
            result = kt_compat.build_and_fit(job["tuner"], job["trial"], job["args"], job["kwargs"])
        if isinstance(result, keras.callbacks.History):
            result = {"history": dict(result.history)}
        else:
            result = {"value": result}
        connection.send(("done", result, plan.nan_guard.where, plan.reporter.reported,
                         plan.reporter.stopped, plan.best.best_value if plan.best else None,
                         job["trial"].hyperparameters.get_config()))
    except BaseException as error:  # reported to the parent, which fails the trial
        fatal = isinstance(error, errors.FatalError)
        connection.send(("error", traceback.format_exc(), fatal))
    finally:
        connection.close()


def _child_copy(tuner, trial, plan):
    """The tuner as the child gets it: no oracle, no progress hook; the callbacks
    that forward the epochs to the tuner's hooks call this copy."""
    twin = copy.copy(tuner)
    twin.oracle = _OracleOutOfReach(tuner.oracle.objective)
    twin.progress = None
    twin.trial_runs = {}
    callbacks = []
    for callback in plan.kwargs.get("callbacks", []):
        if kt_compat.is_tuner_hooks_callback(callback):
            callback = copy.copy(callback)
            callback.tuner = twin
        callbacks.append(callback)
    return twin, dict(plan.kwargs, callbacks=callbacks)


def _payload(tuner, trial, args, plan) -> bytes:
    twin, kwargs = _child_copy(tuner, trial, plan)
    child_plan = type(plan)(kwargs, plan.nan_guard, plan.reporter, plan.best, None,
                            plan.checkpoint)
    job = {"tuner": twin, "trial": trial, "args": args, "kwargs": kwargs, "plan": child_plan}
    oracle, plan.reporter.oracle = plan.reporter.oracle, None  # the child gets a proxy
    try:
        return pickle.dumps(job)
    except Exception as error:
        raise errors.FatalValueError(
            "isolate_trials=True sends the tuner (with its hypermodel), the callbacks and the "
            "data to each trial's process by pickling, and pickling failed: "
            f"{type(error).__name__}: {error}. Define the hypermodel, callbacks and any "
            "Tuner subclass at module level, or set isolate_trials=False.") from error
    finally:
        plan.reporter.oracle = oracle


def run_isolated_execution(tuner, trial, args, plan):
    """Run one execution of ``trial``, planned by ``plan``, in a subprocess.

    Returns ``(result, nan_where, reported, stopped, best_value)``: what
    KerasTuner's build-and-fit returned (a ``History`` is rebuilt here), where a
    non-finite loss stopped training, whether epochs reached the oracle, why
    training was stopped, and the best objective value the execution saved.
    ``trial.hyperparameters`` becomes the child's, with the hyperparameters its
    build registered.

    Raises:
        FailedTrialError: if the child raised or died.
        FatalError: if the child raised one (KerasTuner ends the search).
    """
    payload = _payload(tuner, trial, args, plan)
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=_child_main, args=(child_end, payload, os.getpid()),
                              daemon=True)
    process.start()
    child_end.close()
    finished = False
    try:
        message = _serve(tuner, parent_end, process)
        finished = True
    finally:
        process.join(timeout=_EXIT_WAIT_SECONDS if finished else 0)
        if process.is_alive():
            process.kill()
            process.join()
        parent_end.close()
    _, result, where, reported, stopped, best_value, hyperparameters = message
    # The build in the child registered the hyperparameters it met first there (a conditional
    # one, a per-optimizer one): the trial takes them, so the oracle learns them at the
    # trial's end and samples them later, as in-process.
    trial.hyperparameters = keras_tuner.HyperParameters.from_config(hyperparameters)
    if "history" in result:
        history = keras.callbacks.History()
        history.history = result["history"]
        result = history
    else:
        result = result["value"]
    return result, where, reported, stopped, best_value


def _serve(tuner, connection, process):
    """Answer the child's oracle requests until it reports its result."""
    while True:
        if not connection.poll(_POLL_SECONDS):
            if not process.is_alive():
                raise errors.FailedTrialError(
                    f"the trial process exited with code {process.exitcode} before reporting")
            continue
        try:
            message = connection.recv()
        except EOFError as error:
            process.join()
            raise errors.FailedTrialError(
                f"the trial process exited with code {process.exitcode}") from error
        if message[0] == "update_trial":
            _, trial_id, metrics, step = message
            answer = tuner.oracle.update_trial(trial_id, metrics, step=step)
            connection.send(getattr(answer, "status", answer))
        elif message[0] == "done":
            return message
        else:
            _, text, fatal = message
            error_type = errors.FatalRuntimeError if fatal else errors.FailedTrialError
            raise error_type(f"the trial raised in its process:\n{text}")


__all__ = ["run_isolated_execution"]
