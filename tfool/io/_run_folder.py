"""A run's hold on its output folder: the lock, the manifest, and the removal of the
earlier run's files."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from tfool.io._folders import _exists
from tfool.io._lock import LOCK_NAME, FolderLock, _now, lock_folder
from tfool.io._recording import Recording, _relative, recording
from tfool.io._write import read_json, write_json

logger = logging.getLogger(__package__)


#: The record of the files a run wrote, kept in its output folder.
MANIFEST_NAME = "manifest.json"

#: Subfolders of an output folder whose files a later run never removes.
PROTECTED_FOLDERS = ("retrain",)


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of the run that last wrote into ``folder`` (``None``: there is none).

    Raises:
        ValueError: ``MANIFEST_NAME`` is there but is not a manifest (names the file).
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    manifest = read_json(path)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("path"), str) for f in files
    ):
        raise ValueError(f"{path} is not a manifest: expected a 'files' list of {{'path': ...}}")
    return manifest


def remove_listed(
    folder: str | os.PathLike, manifest: dict, keep: Iterable[str | os.PathLike] = ()
) -> list[str]:
    """Removes from ``folder`` the files ``manifest`` lists: those an earlier run wrote.

    Never removed: a path outside ``folder`` (absolute, with ``..``, or through a link), a
    file under ``PROTECTED_FOLDERS``, the lock file and the manifest, folders, and files at
    or under a path of ``keep`` that lies inside ``folder`` (what the new run reads). Files
    no manifest lists are never touched. Folders the removals leave empty go too (never
    ``folder`` itself).

    Args:
        folder: The output folder.
        manifest: Its earlier run's manifest (``read_manifest``).
        keep: Paths the new run needs.

    Returns:
        The removed paths, relative to ``folder``, ``/``-separated.
    """
    root = os.path.realpath(folder)
    kept = [os.path.realpath(k) for k in keep if _relative(root, k) is not None]
    removed: list[str] = []
    for entry in manifest.get("files", []):
        rel = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(rel, str) or not rel or "\\" in rel or rel.startswith("/"):
            continue
        parts = rel.split("/")
        if ".." in parts or parts[0] in PROTECTED_FOLDERS or rel in (LOCK_NAME, MANIFEST_NAME):
            continue
        path = os.path.join(folder, *parts)
        parent_real = os.path.realpath(os.path.dirname(path))
        if parent_real != root:
            parent = _relative(root, parent_real)
            if parent is None or parent.split("/")[0] in PROTECTED_FOLDERS:
                continue
        real = os.path.join(parent_real, parts[-1])
        if any(real == k or real.startswith(k + os.sep) for k in kept):
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                continue
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append("/".join(parts))
        _remove_empty_parents(os.path.dirname(path), root)
    return removed


def _remove_empty_parents(path: str, root: str) -> None:
    while os.path.realpath(path) != root and _relative(root, path) is not None:
        try:
            os.rmdir(path)
        except OSError:
            return
        path = os.path.dirname(path)


class RunFolder:
    """One run's hold on its output folder, used as ``with RunFolder(...) as run:``.

    Entering takes the folder (``lock_folder``; a second run is refused, a stale lock is
    taken over with a warning) and records every file written under it (``recording``).
    ``start()``, once the run's checks have passed, removes the files the earlier run's
    manifest lists (``remove_listed``) and writes this run's manifest ``MANIFEST_NAME``,
    which is written again after every file. Leaving writes the final manifest (status
    ``finished``, ``interrupted`` or ``failed``, the end time, every file written with its
    size), removes the lock, also after errors and Ctrl-C, and removes the folders it made
    when nothing was written in them, so a refused run leaves nothing behind.

    Args:
        folder: The output folder.
        script: The program writing it, in the manifest (``run_backwork.py``).
        command: Its command line (default: this process's).
        what: The folder in error messages (an argument or flag name).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        script: str,
        command: str | None = None,
        what: str = "folder",
    ):
        self.folder = Path(folder)
        self.script = script
        self.status = "running"
        self.lock: FolderLock | None = None
        self.removed: list[str] = []
        self._command, self._what = command, what
        self._manifest: dict | None = None
        self._recording: Recording | None = None
        self._made: list[Path] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RunFolder:
        missing = self.folder
        while not _exists(missing) and missing != missing.parent:
            self._made.append(missing)
            missing = missing.parent
        try:
            self.lock = lock_folder(self.folder, self._command, self._what)
        except BaseException:
            self._remove_made()
            raise
        self._stack.callback(self.lock.release)
        gone = self.lock.took_over
        if gone is not None:
            logger.warning(
                "%s: took over a stale lock: %s",
                self.folder,
                f"the run {gone.describe()} no longer exists" if gone.pid else "it was damaged",
            )
        self._recording = self._stack.enter_context(
            recording(self.folder, self._written, ignore=(MANIFEST_NAME,))
        )
        return self

    def start(self, flags_file: str | None = None, keep: Iterable[str | os.PathLike] = ()):
        """The run's checks passed and it starts writing: removes the earlier run's files
        (except those at ``keep`` and those this run already wrote) and writes the
        manifest.

        Args:
            flags_file: The name of the run's replayable flags file, for the manifest.
            keep: Paths the run reads (its model, data, a result to go on from).

        Returns:
            The removed files, relative to the folder.
        """
        if self._recording is None:
            raise RuntimeError("RunFolder.start() outside its with block")
        try:
            earlier = read_manifest(self.folder)
        except ValueError as err:
            logger.warning("%s; no file of an earlier run removed", err)
            earlier = None
        if earlier is not None:
            mine = [self.folder / rel for rel in self._recording.files]
            self.removed = remove_listed(self.folder, earlier, [*keep, *mine])
            if self.removed:
                shown = ", ".join(self.removed[:6]) + (", ..." if len(self.removed) > 6 else "")
                logger.info(
                    "%s: removed the %d files of the earlier %s run (%s): %s",
                    self.folder,
                    len(self.removed),
                    earlier.get("script", "?"),
                    earlier.get("status", "?"),
                    shown,
                )
        from tfool import __version__

        holder = self.lock.holder
        self._manifest = {
            "script": self.script,
            "tfool_version": __version__,
            "command": holder.command,
            "pid": holder.pid,
            "host": holder.host,
            "flags_file": flags_file,
            "started": holder.started,
            "ended": None,
            "status": "running",
            "files": [],
        }
        self._write_manifest()
        return self.removed

    def done(self, status: int) -> int:
        """Records the run's exit status (0 finished, 130 interrupted, else failed) for the
        final manifest; returns it."""
        self.status = {0: "finished", 130: "interrupted"}.get(status, "failed")
        return status

    @property
    def files(self) -> dict[str, int]:
        """The files written so far: relative path -> size in bytes."""
        return dict(self._recording.files) if self._recording is not None else {}

    def _written(self, rec: Recording) -> None:
        if self._manifest is not None:
            self._write_manifest()

    def _write_manifest(self) -> None:
        self._manifest["status"] = self.status
        self._manifest["files"] = [
            {"path": rel, "bytes": size} for rel, size in self._recording.files.items()
        ]
        write_json(self.folder / MANIFEST_NAME, self._manifest)

    def __exit__(self, exc_type, exc, tb) -> bool:
        from tfool import interrupts

        with interrupts.protected():  # a signal now counts once the folder is let go
            try:
                if self._manifest is not None:
                    if exc_type is not None:
                        interrupted = issubclass(exc_type, KeyboardInterrupt)
                        self.status = "interrupted" if interrupted else "failed"
                    elif self.status == "running":
                        self.status = "finished"
                    self._manifest["ended"] = _now()
                    try:
                        self._write_manifest()
                    except OSError as err:
                        if exc_type is None:
                            raise
                        logger.warning("could not write %s: %s", MANIFEST_NAME, err)
            finally:
                self._stack.close()
                self._remove_made()
        return False

    def _remove_made(self) -> None:
        """Removes the folders this run made while they are empty (a refused run)."""
        for path in self._made:
            try:
                path.rmdir()
            except OSError:
                return
