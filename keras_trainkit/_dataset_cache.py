"""A cache of embedded data sets that trusts only what the code can verify.

A cache file lives in a folder other processes may write to (``$KERAS_TRAINKIT_CACHE``,
possibly shared), so nothing inside it is taken on trust: a checksum stored in the
same file proves nothing, since whoever writes the arrays can write their checksum.
A cached data set is used only if

1. the ``.npz`` holds the expected arrays, none of which expands to more bytes than
   its expected shape and dtype need (checked from the zip directory before anything
   is decompressed, so a small file cannot expand to gigabytes in memory);
2. their shapes, dtypes, label range and finiteness are the data set's
   (:class:`ArraySpec`);
3. their sha256 (:func:`checksum`) equals the one shipped in this code for the
   data set (``ArraySpec.sha256``).

Anything else is set aside with a warning and the data are generated again. A data
set without a shipped checksum (e.g. MNIST-1D with another generator seed) is
generated on every call and never cached.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_trainkit.utils.files import write_atomically

logger = logging.getLogger("keras_trainkit.datasets")

KEYS = ("x_train", "y_train", "x_test", "y_test")
#: Room for an ``.npy`` member's header beyond its array bytes.
_HEADER_BYTES = 4096


@dataclass(frozen=True)
class ArraySpec:
    """What a data set's four arrays must be.

    Attributes:
        shapes: ``{key: shape}`` for ``x_train``, ``y_train``, ``x_test``, ``y_test``.
        num_classes: labels must lie in ``[0, num_classes)``.
        sha256: the :func:`checksum` of the true arrays, or ``None`` when the code
            cannot know it (such a data set is never read from the cache).
        x_dtype, y_dtype: the arrays' dtypes.
    """

    shapes: dict
    num_classes: int
    sha256: str | None
    x_dtype: str = "float32"
    y_dtype: str = "int64"

    def dtype(self, key: str) -> np.dtype:
        return np.dtype(self.x_dtype if key.startswith("x") else self.y_dtype)

    def max_member_bytes(self, key: str) -> int:
        return math.prod(self.shapes[key]) * self.dtype(key).itemsize + _HEADER_BYTES


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of the four arrays' names, dtypes, shapes and bytes, in :data:`KEYS` order."""
    digest = hashlib.sha256()
    for key in KEYS:
        array = np.ascontiguousarray(arrays[key])
        digest.update(key.encode())
        digest.update(str(array.dtype).encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def problem(arrays: dict[str, np.ndarray], spec: ArraySpec) -> str | None:
    """Why ``arrays`` are not a data set of ``spec`` (shapes, dtypes, labels, finite
    values), or ``None`` when they are."""
    for key in KEYS:
        array = arrays[key]
        if array.dtype != spec.dtype(key) or tuple(array.shape) != tuple(spec.shapes[key]):
            return (f"{key} is {array.dtype} {tuple(array.shape)}, expected {spec.dtype(key)} "
                    f"{tuple(spec.shapes[key])}")
        if key.startswith("y") and array.size and (array.min() < 0 or array.max() >= spec.num_classes):
            return (f"{key} holds labels in [{array.min()}, {array.max()}], expected "
                    f"[0, {spec.num_classes - 1}]")
        if key.startswith("x") and not np.all(np.isfinite(array)):
            return f"{key} holds non-finite values"
    return None


def _read_members(path: Path, spec: ArraySpec) -> dict[str, np.ndarray]:
    """The four arrays of ``path``, refusing a member that would expand past its
    expected size; raises ``ValueError`` (or a zip/``OSError``) when unusable."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        for key in KEYS:
            info = members.get(f"{key}.npy")
            if info is None:
                raise ValueError(f"it has no {key} array")
            if info.file_size > spec.max_member_bytes(key):
                raise ValueError(f"{key} expands to {info.file_size} bytes, more than the "
                                 f"{spec.max_member_bytes(key)} its shape needs")
        # Each array from the member checked above (np.load's data["x_train"] would take a
        # member named "x_train" first, whose size nothing checked).
        arrays = {}
        for key in KEYS:
            with archive.open(members[f"{key}.npy"]) as member:
                arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
        return arrays


def read(path: Path, spec: ArraySpec) -> dict[str, np.ndarray] | None:
    """The verified arrays cached at ``path``, or ``None`` (missing, or set aside with a
    warning because it fails a check of the module docstring)."""
    if spec.sha256 is None or not path.exists():
        return None
    try:
        arrays = _read_members(path, spec)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        logger.warning("Cache file %s is unusable (%s); regenerating it.", path, error)
        return None
    reason = problem(arrays, spec)
    if reason is None and checksum(arrays) != spec.sha256:
        reason = "its arrays differ from the data set's checksum shipped with keras-trainkit"
    if reason is not None:
        logger.warning("Cache file %s is not the data set (%s); regenerating it.", path, reason)
        return None
    return arrays


def write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (``utils.files.write_atomically``: a temporary file in the same
    folder, then ``os.replace``), readable as the umask allows, like any file the user
    writes: a cache folder shared by several users or hosts serves them all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{key: arrays[key] for key in KEYS})
    write_atomically(os.fspath(path), buffer.getvalue())


def load(path: Path, spec: ArraySpec, generate: Callable[[], dict[str, np.ndarray]],
         name: str) -> dict[str, np.ndarray]:
    """The data set ``name``: from the cache at ``path`` if it verifies, else from
    ``generate()`` (validated against ``spec``, cached only when it matches the
    shipped checksum)."""
    arrays = read(path, spec)
    if arrays is not None:
        return arrays
    logger.info("Generating %s into %s", name, path)
    arrays = generate()
    reason = problem(arrays, spec)
    if reason is not None:
        raise RuntimeError(f"The generator of {name} returned other data than expected: {reason}.")
    if spec.sha256 is None:
        return arrays
    if checksum(arrays) != spec.sha256:
        logger.warning("%s as generated here differs from the checksum shipped with keras-trainkit "
                       "(another version of its generator?); using it without caching it.", name)
        return arrays
    try:
        write(path, arrays)
    except OSError as error:  # a read-only home still gets the data
        logger.warning("Could not write the %s cache %s: %s", name, path, error)
    return arrays
