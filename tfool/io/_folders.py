"""Checks of a folder before any work: writable, and names the file system can hold."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def check_writable_folder(path: str | os.PathLike, what: str = "folder") -> Path:
    """Proves, without creating anything, that ``path`` is (or can become) a folder that
    files can be written to, so a run can refuse an unusable folder before any work: a
    temporary file is written and removed in ``path``, or in its nearest existing parent
    when it does not exist yet.

    Args:
        path: The folder.
        what: What the folder is for, in the error message (an argument or flag name).

    Returns:
        The folder as a ``Path``.

    Raises:
        ValueError: ``path`` is empty, an existing file (or under one), or not writable
            (read-only or full file system, no permission); the message names ``what``
            and the path.
    """
    if not str(path).strip():
        raise ValueError(f"{what} is empty; expected a folder path")
    folder = Path(path)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        where = "is" if existing == folder else f"is under {str(existing)!r}, which is"
        raise ValueError(f"{what}={str(path)!r} {where} an existing file; expected a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".tfool-write-check-")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(f"{what}={str(path)!r} cannot be written: {reason}") from err
    return folder


def check_names(folder: str | os.PathLike, names: Iterable[str] = (), what: str = "folder") -> None:
    """Refuses, before any work, paths that the file system cannot hold: a folder of
    ``folder``'s path still to be made, or one of ``names`` (files to be written in
    ``folder``), longer than the file system's limit on a name (``PC_NAME_MAX``, 255 bytes
    on most), or ``folder/name`` longer than its limit on a path (``PC_PATH_MAX``).

    Args:
        folder: The folder, existing or not.
        names: File names that will be written in ``folder``.
        what: What the folder is for, in the error message (an argument or flag name).

    Raises:
        ValueError: naming ``what``, the name, its length in bytes and the limit.
    """
    folder = Path(folder)
    names = list(names)
    existing = _nearest_existing(folder)
    name_max = _pathconf(existing, "PC_NAME_MAX", 255)
    path_max = _pathconf(existing, "PC_PATH_MAX", 4096)
    missing = folder.parts[len(existing.parts) :] if existing != folder else ()
    for name in [*missing, *names]:
        size = len(os.fsencode(name))
        if size > name_max:
            raise ValueError(
                f"{what}: the name {_shortened(name)!r} is {size} bytes long, more than the "
                f"{name_max} bytes a file name may have on the file system of {str(existing)!r}"
            )
    longest = max((len(os.fsencode(n)) + 1 for n in names), default=0)
    size = len(os.fsencode(str(folder))) + longest
    if size >= path_max:
        raise ValueError(
            f"{what}={_shortened(str(folder))!r}: its paths would be {size} bytes long, more "
            f"than the {path_max - 1} bytes a path may have on the file system of "
            f"{str(existing)!r}"
        )


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest parent that exists."""
    existing = path
    while not _exists(existing) and existing != existing.parent:
        existing = existing.parent
    return existing


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; ``False`` also for a name too long to look up."""
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def _pathconf(path: Path, name: str, default: int) -> int:
    try:
        value = os.pathconf(path, name)
    except (OSError, ValueError, AttributeError):  # no limit known (or not POSIX)
        return default
    return value if value and value > 0 else default


def _shortened(text: str) -> str:
    return text if len(text) <= 48 else f"{text[:28]}...{text[-16:]}"
