"""One checkpoint format for every resume: the Trainer, a tuner trial's epochs, SWA's average.

A checkpoint is one ``.npz`` file (a zip of NumPy arrays, each entry with its
CRC-32) holding the arrays in order, optional binary blobs (a dataset
iterator's state) and a JSON header (``__checkpoint__``) naming the format,
its version, the arrays' shapes and dtypes and the caller's metadata (epoch,
step, seed, batch size, hyperparameters, ...).

Writes are atomic: the file is written to a temporary name in the same folder,
flushed to disk and renamed over its final name with ``os.replace``. A crash at
any moment leaves the previous complete checkpoint or the new one, never a
partial one, and the previous one is never removed before the new one is
complete. There is no separate manifest, so nothing can point outside the
file, and nothing is trusted that the file does not prove:

* the file must be a zip whose entries pass their CRC check;
* the header must name this format and a version this code reads;
* the entries' declared sizes must match the header before any is read (a
  small file cannot expand into gigabytes), and arrays are loaded with
  ``allow_pickle=False``;
* when the caller knows the shapes it expects, they must match.

Every failure raises :class:`CheckpointError` (a ``ValueError``) naming the
file and what to do, instead of ``BadZipFile``, ``JSONDecodeError`` or
``KeyError`` from deep inside a loader.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
import zlib

import numpy as np

from keras_trainkit.utils.files import write_atomically

FORMAT = "keras_trainkit.checkpoint"
VERSION = 2
_HEADER = "__checkpoint__"
_BLOB = "blob__"
# Slack per entry for the .npy header NumPy writes before the data.
_NPY_HEADER_SLACK = 4096


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, foreign, or written for another run.

    ``problem`` says what is wrong with the file without its name or the fix
    (e.g. ``"is damaged or truncated (BadZipFile: ...)"``), or is ``None``.
    """

    problem = None


def _error(path, problem, fix="Delete it (or its folder) to start over, or point to another checkpoint."):
    error = CheckpointError(f"The checkpoint {os.fspath(path)!r} {problem}. {fix}")
    error.problem = problem
    return error


def save_checkpoint(path, arrays, meta: dict, blobs: dict | None = None) -> None:
    """Write ``arrays`` (a list of NumPy arrays), ``meta`` (JSON-able) and ``blobs`` to ``path``.

    ``blobs`` maps names to ``bytes`` (e.g. a ``tf.data`` iterator state).
    The write is atomic (see the module docstring).
    """
    arrays = [np.asarray(a) for a in arrays]
    blobs = dict(blobs or {})
    header = {
        "format": FORMAT,
        "version": VERSION,
        "arrays": [{"shape": list(a.shape), "dtype": a.dtype.str} for a in arrays],
        "blobs": {name: len(data) for name, data in blobs.items()},
        "meta": meta,
    }
    for array in arrays:
        if array.dtype == object:
            raise TypeError(f"Checkpoint arrays must be numeric, not object arrays. Received: {array!r}")
    entries = {f"a{i}": a for i, a in enumerate(arrays)}
    entries.update({_BLOB + name: np.frombuffer(data, dtype=np.uint8) for name, data in blobs.items()})
    entries[_HEADER] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    write_atomically(os.fspath(path), buffer.getvalue())


def _read_header(archive: zipfile.ZipFile, path) -> dict:
    try:
        info = archive.getinfo(_HEADER + ".npy")
    except KeyError:
        raise _error(path, "is not a keras_trainkit checkpoint (no header)") from None
    if info.file_size > 16 * 2**20:
        raise _error(path, f"has a header of {info.file_size} bytes (at most 16 MiB expected)")
    try:
        raw = np.load(io.BytesIO(archive.read(info)), allow_pickle=False)
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as error:
        raise _error(path, f"has an unreadable header ({type(error).__name__})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _error(path, "is not a keras_trainkit checkpoint (unknown header)")
    if header.get("version") != VERSION:
        raise _error(path, f"has format version {header.get('version')!r}; this keras_trainkit reads "
                           f"version {VERSION}")
    if not isinstance(header.get("arrays"), list) or not isinstance(header.get("blobs"), dict) \
            or not isinstance(header.get("meta"), dict):
        raise _error(path, "has an incomplete header")
    return header


def _expected_bytes(spec) -> int:
    try:
        shape = [int(d) for d in spec["shape"]]
        dtype = np.dtype(spec["dtype"])
    except (KeyError, TypeError, ValueError):
        return -1
    if dtype == object or any(d < 0 for d in shape):
        return -1
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _check_sizes(archive, header, path) -> None:
    """Every entry's declared size must match the header, before any entry is read."""
    for i, spec in enumerate(header["arrays"]):
        expected = _expected_bytes(spec)
        try:
            info = archive.getinfo(f"a{i}.npy")
        except KeyError:
            raise _error(path, f"is missing array {i}") from None
        if expected < 0 or not expected <= info.file_size <= expected + _NPY_HEADER_SLACK:
            raise _error(path, f"has array {i} of {info.file_size} bytes where its header says {spec}")
    for name, size in header["blobs"].items():
        try:
            info = archive.getinfo(f"{_BLOB}{name}.npy")
        except KeyError:
            raise _error(path, f"is missing its {name!r} data") from None
        if not isinstance(size, int) or not size <= info.file_size <= size + _NPY_HEADER_SLACK:
            raise _error(path, f"has {name!r} data of the wrong size")


@contextlib.contextmanager
def _checked_archive(path):
    """``(archive, header)`` of the checkpoint at ``path``, its header read and its entries'
    sizes checked; any error while it is read, here or in the caller's block, becomes
    one :class:`CheckpointError` naming the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            header = _read_header(archive, path)
            _check_sizes(archive, header, path)
            yield archive, header
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, zlib.error) as error:
        raise _error(path, f"is damaged or truncated ({type(error).__name__}: {str(error)[:120]})") from None


def load_checkpoint(path, expected_shapes=None):
    """``(arrays, meta, blobs)`` from the checkpoint at ``path``, or ``None`` if there is no file.

    ``expected_shapes`` (a list of shapes), when given, must match the
    checkpoint's arrays one for one.

    Raises:
        CheckpointError: the file is damaged, foreign, of another format
            version, or does not match ``expected_shapes``.
    """
    if not os.path.exists(path):
        return None
    with _checked_archive(path) as (archive, header):
        shapes = [tuple(spec["shape"]) for spec in header["arrays"]]
        if expected_shapes is not None and [tuple(s) for s in expected_shapes] != shapes:
            raise _error(
                path, "was written for other variables (other count or shapes) than this model, "
                      "optimizer and training set-up have",
                "Use a new folder, or the script and model that wrote it.")
        arrays = [np.load(io.BytesIO(archive.read(f"a{i}.npy")), allow_pickle=False)
                  for i in range(len(shapes))]
        blobs = {name: np.load(io.BytesIO(archive.read(f"{_BLOB}{name}.npy")),
                               allow_pickle=False).tobytes() for name in header["blobs"]}
    for i, (array, spec) in enumerate(zip(arrays, header["arrays"])):
        if list(array.shape) != list(spec["shape"]) or array.dtype.str != spec["dtype"]:
            raise _error(path, f"has array {i} unlike its header")
    return arrays, header["meta"], blobs


def read_checkpoint_meta(path):
    """The metadata of the checkpoint at ``path`` without loading its arrays, or ``None`` if there is no file.

    It makes the checks of :func:`load_checkpoint` that do not need the
    caller's shapes: the header, the entries' declared sizes, and every
    entry's CRC-32 (the entries are read through in chunks and dropped), so a
    damaged or truncated file is refused here, not only when it is loaded.

    Raises:
        CheckpointError: the file is damaged, foreign or of another format version.
    """
    if not os.path.exists(path):
        return None
    with _checked_archive(path) as (archive, header):
        bad = archive.testzip()
    if bad is not None:
        raise _error(path, f"is damaged (its entry {bad!r} fails its CRC check)")
    return header["meta"]


def variable_arrays(variables) -> list:
    """The values of ``variables`` (Keras variables or tensors) as NumPy arrays, copied."""
    import keras

    return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in variables]


def assign_arrays(variables, arrays, path) -> None:
    """Assign ``arrays`` to ``variables`` one for one, after checking count and shapes."""
    variables = list(variables)
    if len(variables) != len(arrays) or any(
            tuple(v.shape) != tuple(a.shape) for v, a in zip(variables, arrays)):
        raise _error(path, "was written for other variables (other count or shapes) than this model, "
                           "optimizer and training set-up have",
                     "Use a new folder, or the script and model that wrote it.")
    for variable, array in zip(variables, arrays):
        variable.assign(array)
