"""The record of what a run writes: every file written under a folder while a block runs."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


class Recording:
    """The files written through this module under one folder while a ``recording``
    block runs.

    Attributes:
        folder: The folder.
        files: Path relative to ``folder`` (``/``-separated) -> size in bytes, in the order
            first written; a file written again keeps its place and takes its new size.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        on_write: Callable[[Recording], None] | None = None,
        ignore: Iterable[str] = (),
    ):
        self.folder = Path(folder)
        self.files: dict[str, int] = {}
        self._on_write = on_write
        self._ignore = frozenset(ignore)

    def _add(self, path: Path) -> None:
        rel = _relative(self.folder, path)
        if rel is None or rel in self._ignore:
            return
        try:
            self.files[rel] = os.stat(path).st_size
        except OSError:  # moved away meanwhile
            return
        if self._on_write is not None:
            self._on_write(self)


_recordings: list[Recording] = []
_recordings_lock = threading.Lock()


@contextlib.contextmanager
def recording(
    folder: str | os.PathLike,
    on_write: Callable[[Recording], None] | None = None,
    ignore: Iterable[str] = (),
) -> Iterator[Recording]:
    """Records every file this module writes under ``folder`` while the block runs.

    Every writer here goes through ``atomic_path`` (``write_text``, ``write_json``,
    ``write_npz``, ``write_csv``, ``save_figure``, ``write_with``) and so do tfool's models,
    figures and reports, so the record is complete without any writer listing its files.

    Args:
        folder: The folder whose files (at any depth) are recorded.
        on_write: Called with the ``Recording`` after each file it records.
        ignore: Paths relative to ``folder`` not to record.

    Yields:
        The ``Recording``, filled in as files are written.
    """
    rec = Recording(folder, on_write, ignore)
    with _recordings_lock:
        _recordings.append(rec)
    try:
        yield rec
    finally:
        with _recordings_lock:
            _recordings.remove(rec)


def _written(path: Path) -> None:
    """Reports a file just written to the recordings of the folders above it."""
    with _recordings_lock:
        active = list(_recordings)
    for rec in active:
        rec._add(path)


def _relative(folder: str | os.PathLike, path: str | os.PathLike) -> str | None:
    """``path`` relative to ``folder`` (symbolic links resolved), ``/``-separated; ``None``
    when it is not strictly inside ``folder``."""
    try:
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(folder))
    except ValueError:  # another drive
        return None
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return None
    return Path(rel).as_posix()


# A run's hold on its output folder --------------------------------------------------------
