"""Atomic step checkpoints of the :class:`~keras_trainkit.training.Trainer` (crash-safe resume).

A checkpoint is one ``.npz`` file of arrays and a JSON manifest naming it. Each
file is written to a temporary name in the same folder, flushed to disk and
renamed over its final name with ``os.replace`` (atomic on POSIX and Windows);
the manifest is written last. So the manifest only ever names a complete
checkpoint, and a write cut short by a crash leaves at most a temporary file
that nothing reads.
"""

from __future__ import annotations

import io
import json
import logging
import os

import numpy as np

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_PREFIX = "ckpt-"


def _commit(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file, fsync, ``os.replace``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save(directory: str, arrays, meta: dict) -> str:
    """Write ``arrays`` and ``meta`` as the newest checkpoint; returns its file name."""
    os.makedirs(directory, exist_ok=True)
    name = f"{_PREFIX}{int(meta['epoch']):06d}-{int(meta['step']):09d}.npz"
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    data = buffer.getvalue()
    _commit(os.path.join(directory, name), data)
    manifest = {**meta, "checkpoint": name, "arrays": len(arrays), "bytes": len(data)}
    _commit(os.path.join(directory, MANIFEST), json.dumps(manifest, sort_keys=True).encode())
    for other in os.listdir(directory):
        if other.startswith(_PREFIX) and other != name:
            try:
                os.remove(os.path.join(directory, other))
            except OSError:  # pragma: no cover - another process cleaning up
                pass
    return name


def load(directory: str):
    """``(arrays, manifest)`` of the checkpoint the manifest names, or ``None`` when there is none."""
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
    return arrays, manifest
