"""Run one KerasTuner trial in a fresh subprocess.

Models, graphs and allocator caches of a trial die with its process, so the
search process's host memory stays flat and a GPU's memory is returned after
every trial (TensorFlow never gives GPU memory back inside a process).

The child is started with ``multiprocessing``'s ``spawn`` method (a new
interpreter, nothing inherited but the arguments). It builds the model from the
hypermodel and the trial's hyperparameters, trains it with the tuner's
callbacks (best-epoch weights, epoch checkpoints, the non-finite guard), and
after each epoch sends the logs through a pipe. The parent forwards them to
the oracle and answers whether to stop (pruning). Data and hypermodel travel
pickled, so both must be picklable.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import traceback

import keras
from keras_tuner.src import errors

# How often the parent checks that the child is alive while waiting.
_POLL_SECONDS = 1.0


class _ReportToParent(keras.callbacks.Callback):
    def __init__(self, connection):
        super().__init__()
        self.connection = connection

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items() if getattr(v, "ndim", 0) == 0}
        self.connection.send(("epoch", epoch, logs))
        if self.connection.recv():
            self.model.stop_training = True


def _child_main(connection, payload: bytes) -> None:
    """Entry point of the trial process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras_tuner
        from keras_tuner.src import utils as kt_utils

        from keras_trainkit.tuning.tuners import NonFiniteLoss, before_checkpoint

        job = pickle.loads(payload)
        hp = keras_tuner.HyperParameters.from_config(job["hyperparameters"])
        hypermodel = job["hypermodel"]
        model = hypermodel.build(hp)
        kt_utils.save_json(job["build_config_path"], model.get_build_config())
        callbacks = before_checkpoint(job["callbacks"], _ReportToParent(connection))
        nan_guard = next(cb for cb in callbacks if isinstance(cb, NonFiniteLoss))
        history = hypermodel.fit(hp, model, *job["args"], callbacks=callbacks, **job["kwargs"])
        connection.send(("done", dict(history.history), nan_guard.where))
    except BaseException:  # reported to the parent, which fails the trial
        connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


def run_isolated_trial(tuner, trial, args, kwargs):
    """Run ``trial`` in a subprocess for ``tuner`` (a ``TrainkitTunerMixin`` tuner).

    Returns a list with one ``keras.callbacks.History`` (as ``run_trial`` does).
    Raises ``FailedTrialError`` if the child raised or died.
    """
    kwargs = dict(kwargs)
    callbacks, _, resume_epoch = tuner._trial_callbacks(trial, kwargs.pop("callbacks", []), 0)
    if resume_epoch is not None:
        kwargs["initial_epoch"] = resume_epoch + 1
    payload = pickle.dumps({
        "hypermodel": tuner.hypermodel,
        "hyperparameters": trial.hyperparameters.get_config(),
        "args": args,
        "kwargs": kwargs,
        "callbacks": callbacks,
        "build_config_path": tuner._get_build_config_fname(trial.trial_id),
    })
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=_child_main, args=(child_end, payload), daemon=True)
    process.start()
    child_end.close()
    try:
        while True:
            if not parent_end.poll(_POLL_SECONDS):
                if not process.is_alive():
                    raise errors.FailedTrialError(
                        f"the trial process exited with code {process.exitcode} before reporting")
                continue
            try:
                message = parent_end.recv()
            except EOFError as error:
                process.join()
                raise errors.FailedTrialError(
                    f"the trial process exited with code {process.exitcode}") from error
            if message[0] == "epoch":
                _, epoch, logs = message
                parent_end.send(tuner.report_epoch(trial, epoch, logs))
            elif message[0] == "done":
                _, history_dict, where = message
                break
            else:
                raise errors.FailedTrialError(f"the trial raised in its process:\n{message[1]}")
    finally:
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
        parent_end.close()
    tuner.raise_if_not_finite(where)
    history = keras.callbacks.History()
    history.history = history_dict
    return [history]


__all__ = ["run_isolated_trial"]
