"""Output paths of the ``trainkit`` commands, checked before any work.

One rule for every command: a missing output folder (``--output``, or the folder
of a file such as ``--plot``) is created with any missing parents, and the
command says so on standard error (``trainkit <command>: created folder <path>``).
A path that cannot be written (a file where a folder must be, no permission, a
read-only file system) is a usage error, reported in one line before any work.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def _unwritable(flag: str, path, what: str, error: OSError) -> ValueError:
    reason = error.strerror or type(error).__name__
    where = f": {error.filename!r}" if error.filename else ""
    return ValueError(f"Argument `{flag}` must name {what} that can be written ({reason}{where}). "
                      f"Received: {flag}={str(path)!r}")


def _make_folder(folder: Path, command: str) -> None:
    """Create ``folder`` and its missing parents, saying which were created."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    if missing:
        print(f"trainkit {command}: created folder {folder.resolve()}"
              + (f" (and {len(missing) - 1} missing parent folder(s))" if len(missing) > 1 else ""),
              file=sys.stderr)


def _probe(folder: Path) -> None:
    """Create and delete a file in ``folder``: raises the ``OSError`` a real write would."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists."""
    return next(p for p in (folder, *folder.parents) if p.exists())


def output_folder(path, flag: str, command: str, create: bool = True) -> Path:
    """Check (and if missing create) the output folder ``path``; returns it as a ``Path``.

    With ``create=False`` a missing folder is only checked: its nearest existing
    ancestor must be a folder that can be written. A command whose later checks
    can still refuse (``trainkit tune``'s storage) creates it after them, so a
    refused command leaves no empty folder behind.

    Raises:
        ValueError: the folder cannot be created or written.
    """
    folder = Path(path).expanduser()
    try:
        existing = _nearest_existing(folder.absolute())
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(existing))
        if create:
            _make_folder(folder, command)
        _probe(folder if create else existing)
    except OSError as error:
        raise _unwritable(flag, path, "a folder", error) from None
    return folder


def output_file(path, flag: str, command: str, create: bool = True) -> Path:
    """Check that the file ``path`` can be written (its folder by :func:`output_folder`'s
    rule, ``create`` as there); nothing is written to ``path`` itself. Returns it as a ``Path``.

    Raises:
        ValueError: the file cannot be written.
    """
    file = Path(path).expanduser()
    try:
        if file.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(file))
        if file.parent.exists() and not file.parent.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(file.parent))
        if not create and not file.parent.exists():
            output_folder(file.parent, flag, command, create=False)
            return file
        _make_folder(file.parent, command)
        if file.exists():
            with open(file, "ab"):  # opens for writing without changing it
                pass
        else:
            _probe(file.parent)
    except OSError as error:
        raise _unwritable(flag, path, "a file", error) from None
    return file
