"""Crash-safe file writes, shared by the Trainer's checkpoints and the tuners' records."""

from __future__ import annotations

import json
import os
from typing import Any


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never a part.

    The bytes go to a temporary file in the same folder, are flushed to disk and
    renamed over ``path`` with ``os.replace`` (atomic on POSIX and Windows); the
    folder is then synced so that the rename itself survives a power cut. A
    write that fails (a full disk) removes its temporary file; one cut short by
    a kill leaves at most the temporary file. The file's mode is that of any
    file the user creates (``0o666`` less the umask).
    """
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _sync_folder(path)


def replace_atomically(source: str, path: str) -> None:
    """Rename the complete file ``source`` over ``path`` (``os.replace``, atomic) and
    sync the folder, so the rename survives a power cut as :func:`write_atomically`'s."""
    os.replace(source, path)
    _sync_folder(path)


def _sync_folder(path: str) -> None:
    """Flush the folder holding ``path`` to disk (where the system allows it)."""
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomically(path: str, state: Any) -> None:
    """Write ``state`` as JSON to ``path`` with :func:`write_atomically` (old file or new, never a part)."""
    write_atomically(path, json.dumps(state).encode())
