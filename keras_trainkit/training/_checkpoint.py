"""Atomic step checkpoints of the :class:`~keras_trainkit.training.Trainer` (crash-safe resume).

A checkpoint is one ``.npz`` file of arrays and a JSON manifest naming it. Each
file is written to a temporary name in the same folder, flushed to disk and
renamed over its final name with ``os.replace`` (atomic on POSIX and Windows);
the manifest is written last. So the manifest only ever names a complete
checkpoint, and a write cut short by a crash leaves at most a temporary file
that nothing reads.

A ``tf.data.Dataset`` input is resumed through its random state
(:class:`DatasetCursor`): TensorFlow's own iterator checkpoint
(``tf.train.Checkpoint(iterator=...)``) of an iterator that was never pulled
holds the seeds and the seed-generator counts of every random op in the
pipeline (``shuffle`` with ``reshuffle_each_iteration``, ``Dataset.random``,
...). Restored before an epoch's iterator is made, it makes that iterator
yield the order the uninterrupted run saw; the Trainer then skips the batches
already done. The state holds no element data (about 170 bytes per slot of a
shuffle buffer) and is stored inside the checkpoint file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile

import numpy as np
import tensorflow as tf

from keras_trainkit.utils.files import write_atomically

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_PREFIX = "ckpt-"


def save(directory: str, arrays, meta: dict, data_state: dict | None = None) -> str:
    """Write ``arrays`` and ``meta`` as the newest checkpoint; returns its file name.

    ``data_state`` (the files of a dataset iterator's TF checkpoint, as
    ``{suffix: bytes}``) goes into the same file.
    """
    os.makedirs(directory, exist_ok=True)
    name = f"{_PREFIX}{int(meta['epoch']):06d}-{int(meta['step']):09d}.npz"
    buffer = io.BytesIO()
    suffixes = sorted(data_state or {})
    named = {f"data_state_{i}": np.frombuffer(data_state[s], dtype=np.uint8)
             for i, s in enumerate(suffixes)}
    np.savez(buffer, *arrays, **named)
    data = buffer.getvalue()
    write_atomically(os.path.join(directory, name), data)
    manifest = {**meta, "checkpoint": name, "arrays": len(arrays), "bytes": len(data)}
    if data_state is not None:
        manifest["data_state"] = suffixes
    write_atomically(os.path.join(directory, MANIFEST), json.dumps(manifest, sort_keys=True).encode())
    for other in os.listdir(directory):
        if other.startswith(_PREFIX) and other != name:
            try:
                os.remove(os.path.join(directory, other))
            except OSError:  # pragma: no cover - another process cleaning up
                pass
    return name


def load(directory: str):
    """``(arrays, manifest, data_state)`` of the checkpoint the manifest names, or ``None``.

    ``data_state`` is ``None`` for a checkpoint written without one (array inputs).
    """
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        manifest = json.loads(handle.read().decode())
    file = os.path.join(directory, manifest["checkpoint"])
    size = os.path.getsize(file) if os.path.exists(file) else -1
    if size != manifest["bytes"]:
        raise ValueError(
            f"The checkpoint named by {path} is missing or incomplete ({size} of "
            f"{manifest['bytes']} bytes). Received: checkpoint_dir={directory!r}"
        )
    with np.load(file) as archive:
        arrays = [archive[f"arr_{i}"] for i in range(manifest["arrays"])]
        data_state = None
        if "data_state" in manifest:
            data_state = {suffix: archive[f"data_state_{i}"].tobytes()
                          for i, suffix in enumerate(manifest["data_state"])}
    return arrays, manifest, data_state


class DatasetCursor:
    """The resumable position of a ``tf.data.Dataset``: its random state before each epoch.

    The Trainer makes one fresh iterator per epoch, and each new iterator draws
    its shuffle seeds from generators inside the dataset (so every epoch has
    its own order). The cursor keeps a *probe*, an iterator of the same dataset
    that is never pulled; its TF checkpoint records the generators' counts. The
    Trainer calls :meth:`mark` right before making an epoch's iterator and saves
    that state with the checkpoints of the epoch (:attr:`epoch_state`), or the
    current state (:meth:`state`) at an epoch end. :meth:`restore` puts a saved
    state back, so the next iterator made yields the saved epoch's order.

    Saving uses ``ExternalStatePolicy.FAIL``: a pipeline whose state TensorFlow
    cannot save (``py_function``, ``from_generator``, stateful random ops in a
    ``map``) is refused with a ``ValueError`` naming ``checkpoint_dir``.

    Args:
        dataset: the ``tf.data.Dataset`` given to ``fit``.
    """

    def __init__(self, dataset):
        options = tf.data.Options()
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.FAIL
        self._probe = iter(dataset.with_options(options))
        self.epoch_state = self.state()  # refuses an unsaveable pipeline before training

    def state(self) -> dict:
        """The probe's TF checkpoint now, as ``{file suffix: bytes}``."""
        with tempfile.TemporaryDirectory() as folder:
            prefix = os.path.join(folder, "data")
            try:
                tf.train.Checkpoint(iterator=self._probe).write(prefix)
            except (tf.errors.OpError, ValueError) as error:
                raise ValueError(
                    "Argument `checkpoint_dir` needs a dataset whose state TensorFlow can "
                    "save; replace `py_function`/`from_generator` and stateful random ops "
                    "in `map` (tf.random.uniform, Keras random layers) with stateless ones "
                    "(tf.random.stateless_*, seeded `Dataset.random`), or pass arrays. "
                    f"Received: a dataset whose state cannot be saved ({error.__class__.__name__}: "
                    f"{str(error).strip().splitlines()[0][:300]})"
                ) from None
            return {name[len("data"):]: _read(os.path.join(folder, name))
                    for name in sorted(os.listdir(folder)) if name.startswith("data")}

    def mark(self) -> None:
        """Record the state before an epoch's iterator is made (:attr:`epoch_state`)."""
        self.epoch_state = self.state()

    def restore(self, state: dict) -> None:
        """Put back a state returned by :meth:`state`."""
        with tempfile.TemporaryDirectory() as folder:
            for suffix, data in state.items():
                with open(os.path.join(folder, "data" + suffix), "wb") as handle:
                    handle.write(data)
            try:
                tf.train.Checkpoint(iterator=self._probe).read(
                    os.path.join(folder, "data")).assert_consumed()
            except (tf.errors.OpError, AssertionError, ValueError) as error:
                raise ValueError(
                    "The checkpoint's dataset state does not match this dataset (another "
                    "pipeline). Use a new folder or the same script. Received: a dataset "
                    f"whose state could not be restored ({error.__class__.__name__})"
                ) from None
        self.epoch_state = state


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
