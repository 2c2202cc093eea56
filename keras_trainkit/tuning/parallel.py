"""Parallel trials on one host through KerasTuner's own chief/worker protocol.

KerasTuner distributes a search with environment variables: a *chief*
process (``KERASTUNER_TUNER_ID=chief``) serves the oracle over gRPC at
``KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT``, and each *worker*
(``KERASTUNER_TUNER_ID=tuner<i>``) asks it for trials and reports results.
:func:`parallel_search` starts one chief and ``parallel_trials`` workers as
fresh processes on 127.0.0.1, waits for them, and returns the tuner reloaded
from disk in the calling process (for ``get_best_models`` and the report).

Devices: with ``gpus`` (a list of GPU indices; default: every visible GPU),
worker ``i`` sees only ``gpus[i % len(gpus)]`` through
``CUDA_VISIBLE_DEVICES``; several workers may share a GPU when
``gpu_memory_limit_mb`` caps each one's memory. Without GPUs the workers are
plain CPU processes.

The chief listens on loopback only (:data:`HOST`): KerasTuner's oracle server
has no authentication or encryption, and anyone who reaches its port can read
the trials, report false scores and change the search space.

Several hosts: run the same script on every host with the same three
variables set by hand (the chief bound to an address only the workers reach,
a private interface or loopback behind SSH tunnels, never ``0.0.0.0``; a
``tuner<i>`` id unique across hosts) and the same ``directory`` on a shared
file system; see ``docs/tuning.md``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import socket

from keras_trainkit.utils.validation import check_non_negative, check_positive

logger = logging.getLogger(__name__)

#: The interface the chief's oracle server binds to: loopback, this host only.
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _role_main(role: str, env: dict, make_tuner, args, kwargs, memory_limit_mb) -> None:
    os.environ.update(env)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if memory_limit_mb:
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=memory_limit_mb)])
    tuner = make_tuner()
    if role == "chief":
        tuner.search()  # serves the oracle until the workers are done
    else:
        tuner.search(*args, **kwargs)


def _visible_gpus() -> list[int]:
    import tensorflow as tf

    return list(range(len(tf.config.list_physical_devices("GPU"))))


def _check_parallel_arguments(make_tuner, parallel_trials, gpus, gpu_memory_limit_mb) -> None:
    """Check the arguments in this process, before a chief or worker starts (a bad one
    failed each worker and surfaced as "Parallel search workers failed")."""
    check_positive("parallel_trials", parallel_trials, integer=True)
    if not callable(make_tuner):
        raise TypeError("Argument `make_tuner` must be a function returning the tuner. "
                        f"Received: make_tuner={make_tuner!r}")
    try:  # the spawned processes receive it pickled
        pickle.dumps(make_tuner)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise TypeError("Argument `make_tuner` must be picklable for the worker processes: a "
                        "module-level function or a functools.partial of one, not a lambda or "
                        f"a nested function ({error}). Received: make_tuner={make_tuner!r}") from None
    if gpus is not None:
        if isinstance(gpus, (str, bytes)) or not hasattr(gpus, "__iter__"):
            raise TypeError(f"Argument `gpus` must be a list of GPU indices. Received: gpus={gpus!r}")
        for index in gpus:
            check_non_negative("gpus", index, integer=True)
    if gpu_memory_limit_mb is not None:
        check_positive("gpu_memory_limit_mb", gpu_memory_limit_mb, integer=True)


def parallel_search(make_tuner, *search_args, parallel_trials: int = 2, gpus=None,
                    gpu_memory_limit_mb: int | None = None, **search_kwargs):
    """Run ``make_tuner().search(*search_args, **search_kwargs)`` with
    ``parallel_trials`` workers on this host.

    Args:
        make_tuner: a picklable zero-argument callable (a module-level function
            or a ``functools.partial`` of one) returning the tuner; every call
            must give the same ``directory`` and ``project_name``, and
            ``overwrite=False`` so the calling process can reload the result.
        parallel_trials: the number of worker processes.
        gpus: GPU indices to spread the workers over (default: all visible).
        gpu_memory_limit_mb: per-worker GPU memory cap, to put several
            workers on one GPU.

    Returns:
        The tuner, reloaded from disk in this process.

    Raises:
        TypeError, ValueError: for a ``make_tuner`` that is not a picklable function,
            ``parallel_trials`` not a positive integer, ``gpus`` not GPU indices or
            ``gpu_memory_limit_mb`` not ``None`` or a positive integer.
        RuntimeError: if a worker exits with an error (the oracle's state on
            disk is kept; running the search again resumes it).
    """
    _check_parallel_arguments(make_tuner, parallel_trials, gpus, gpu_memory_limit_mb)
    gpus = _visible_gpus() if gpus is None else list(gpus)
    port = free_port()
    base = {"KERASTUNER_ORACLE_IP": HOST, "KERASTUNER_ORACLE_PORT": str(port)}
    context = multiprocessing.get_context("spawn")
    chief = context.Process(
        target=_role_main,
        args=("chief", {**base, "KERASTUNER_TUNER_ID": "chief"}, make_tuner, (), {}, None))
    chief.start()
    workers = []
    for i in range(int(parallel_trials)):
        env = {**base, "KERASTUNER_TUNER_ID": f"tuner{i}"}
        env["CUDA_VISIBLE_DEVICES"] = str(gpus[i % len(gpus)]) if gpus else ""
        worker = context.Process(target=_role_main, args=(
            f"tuner{i}", env, make_tuner, search_args, search_kwargs, gpu_memory_limit_mb))
        worker.start()
        workers.append(worker)
    for worker in workers:
        worker.join()
    # Every trial has ended once the workers are done; the chief only waits to
    # notice it, so it need not be waited for long.
    chief.join(timeout=30)
    if chief.is_alive():
        chief.terminate()
        chief.join()
    failed = [f"tuner{i} (exit code {w.exitcode})" for i, w in enumerate(workers) if w.exitcode]
    if failed:
        raise RuntimeError(f"Parallel search workers failed: {', '.join(failed)}. The search "
                           "state is saved; run the search again to resume it.")
    return make_tuner()


__all__ = ["free_port", "parallel_search"]
