"""Atomic file writing: JSON, NPZ, CSV, text, figures and models go via a temp file + rename;
the record of what a run wrote, and a run's hold on its output folder."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import io as _stdio
import json
import logging
import os
import shlex
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # not on Windows: the pid in the lock file is all there is
    fcntl = None

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` only on success.

    A failure (or Ctrl-C) inside the block removes the temporary file and leaves any
    existing file at ``path`` untouched. The temporary name is ``.tmp``, 8 random
    characters and the suffix, never longer than ``path``'s name (or 32 bytes), so any
    name the file system takes works. A file written is reported to every ``recording``
    of a folder above it.

    Args:
        path: The final destination.
        suffix: Suffix of the temporary file (defaults to the destination's, so that
            writers that pick a format from the extension keep working); left out when it
            would make the temporary name longer than the final one.

    Yields:
        The temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(
        prefix=".tmp", suffix=_temp_suffix(path.name, suffix), dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    _written(path)


#: Bytes of a temporary name besides its suffix: ``.tmp`` and 8 random characters.
_TEMP_STEM = 12


def _temp_suffix(name: str, suffix: str) -> str:
    """The suffix of the temporary file of ``name``: ``suffix``, unless it would make the
    temporary name (``.tmpXXXXXXXX<suffix>``) longer than both ``name`` and 32 bytes, so
    that a legal final name always has a legal temporary name."""
    limit = max(len(os.fsencode(name)), 32)
    return suffix if _TEMP_STEM + len(os.fsencode(suffix)) <= limit else ""


def write_with(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Calls ``writer(tmp_path)`` and atomically moves the result to ``path``.

    Args:
        path: The final destination.
        writer: A function that writes the whole file at the path it is given.

    Returns:
        The destination path.
    """
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) atomically to ``path``."""
    return write_with(path, lambda p: p.write_text(text, encoding="utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _plain_keys(obj: Any) -> Any:
    """Copies nested dicts/lists with NumPy scalar dict keys turned into Python ones."""
    if isinstance(obj, dict):
        return {
            (_json_default(k) if isinstance(k, np.generic) else k): _plain_keys(v)
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_plain_keys(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Writes ``obj`` as indented JSON atomically (NumPy scalars, arrays and keys allowed)."""
    text = json.dumps(_plain_keys(obj), indent=2, default=_json_default, allow_nan=True) + "\n"
    return write_text(path, text)


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file, with a ``ValueError`` naming the file when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def write_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """Writes a compressed ``.npz`` atomically."""

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    return write_with(path, _write)


def write_csv(path: str | os.PathLike, header: list[str], rows: list[list[Any]]) -> Path:
    """Writes a small CSV table atomically.

    Floats (Python or NumPy) are written with 6 significant digits, other values with
    ``str``; cells holding commas, quotes or newlines are quoted the standard way.
    """

    def _cell(value: Any) -> str:
        return f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)

    buf = _stdio.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([str(h) for h in header])
    writer.writerows([_cell(v) for v in row] for row in rows)
    return write_text(path, buf.getvalue())


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Saves a matplotlib figure atomically; the format comes from ``path``'s suffix."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return write_with(path, lambda p: fig.savefig(p, format=fmt, dpi=dpi, bbox_inches="tight"))


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


# The record of what a run writes -----------------------------------------------------------


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

#: The lock file a run keeps in its output folder while it runs.
LOCK_NAME = ".tfool.lock"

#: The record of the files a run wrote, kept in its output folder.
MANIFEST_NAME = "manifest.json"

#: Subfolders of an output folder whose files a later run never removes.
PROTECTED_FOLDERS = ("retrain",)

#: A lock file that cannot be read yet is taken for one being written for this long (s).
_YOUNG_LOCK_S = 5.0


@dataclasses.dataclass(frozen=True)
class LockHolder:
    """The run holding an output folder, as its lock file says.

    Attributes:
        pid: Its process id.
        host: The machine it runs on (``socket.gethostname()``).
        command: Its command line.
        started: When it took the folder (ISO 8601, local time).
        process_start: When the process started, in clock ticks after boot (Linux
            ``/proc``); tells the process apart from a later one given the same pid.
            ``None`` where unknown.
    """

    pid: int
    host: str
    command: str
    started: str
    process_start: int | None = None

    def describe(self) -> str:
        """``pid 123 (python3 run_backwork.py ...), started 2030-01-01T12:00:00+00:00``."""
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        command = self.command if len(self.command) <= 200 else self.command[:197] + "..."
        return f"pid {self.pid}{where} ({command}), started {self.started}"

    def alive(self) -> bool:
        """Whether the process still runs; ``True`` for another machine's (not visible
        from here), for a process of another user and where processes cannot be probed."""
        if self.host != socket.gethostname() or os.name != "posix":
            return True  # os.kill(pid, 0) would end the process on Windows
        if self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except OSError:  # PermissionError: another user's process
            pass
        state, start = _process_state(self.pid)
        if state == "Z":  # exited, not yet reaped
            return False
        return self.process_start is None or start is None or start == self.process_start


def this_process(command: str | None = None) -> LockHolder:
    """This process as a ``LockHolder`` (``command`` defaults to its own command line)."""
    if command is None:
        command = shlex.join([os.path.basename(sys.executable), *sys.argv])
    return LockHolder(
        os.getpid(), socket.gethostname(), command, _now(), _process_state(os.getpid())[1]
    )


def _process_state(pid: int) -> tuple[str | None, int | None]:
    """The state letter and start time (clock ticks after boot) of process ``pid`` from
    ``/proc``; ``(None, None)`` where there is no ``/proc``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None, None


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class FolderLock:
    """A run's hold on a folder (``lock_folder``): the lock file, and where the file
    system has them an exclusive ``flock`` on it for as long as the run lasts.

    Attributes:
        path: The lock file.
        holder: This run, as the lock file says.
        took_over: The gone run whose stale lock this one replaced (``None``: there was
            none; a ``LockHolder`` with pid 0: a damaged lock file).
    """

    def __init__(self, path: Path, fd: int, holder: LockHolder, took_over: LockHolder | None):
        self.path, self.holder, self.took_over = path, holder, took_over
        self._fd: int | None = fd

    def release(self) -> None:
        """Removes the lock file (while it is still this lock's) and lets the folder go."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                os.unlink(self.path)
        except OSError as err:
            logger.warning("could not remove the lock file %s: %s", self.path, err)
        finally:
            os.close(fd)


def lock_folder(
    folder: str | os.PathLike, command: str | None = None, what: str = "folder"
) -> FolderLock:
    """Takes ``folder`` (made when missing) for this process, or refuses when another
    live run holds it.

    The lock file ``LOCK_NAME`` is created atomically (``O_CREAT | O_EXCL``) and holds this
    process's pid, machine, command line and start time. A lock whose process no longer
    exists (or that cannot be read and is older than a few seconds) is stale: it is taken
    over and ``FolderLock.took_over`` says whose it was. While the lock is held, an
    exclusive ``flock`` on it (where the file system has them) keeps two runs from taking
    over the same stale lock.

    Args:
        folder: The folder.
        command: The command line to record (default: this process's).
        what: What the folder is for, in the error message (an argument or flag name).

    Returns:
        The lock; ``release()`` it at the end (also on errors and interruptions).

    Raises:
        ValueError: another live run holds ``folder``; the message names ``what``, the
            folder, that run's pid and command, and the lock file.
        OSError: the folder cannot be made or written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    me = this_process(command)
    text = (json.dumps(dataclasses.asdict(me)) + "\n").encode("utf-8")
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            lock = _take_stale(folder, path, me, text, what)
            if lock is not None:
                return lock
            continue  # removed or replaced meanwhile: look again
        try:
            for _ in range(40):  # another run may be reading it for a moment
                if _flock(fd) is not False:
                    break
                time.sleep(0.025)
            _write_all(fd, text)
        except BaseException:
            os.close(fd)
            raise
        return FolderLock(path, fd, me, None)
    raise ValueError(f"{what}={str(folder)!r}: could not take the lock file {path}")


def _take_stale(
    folder: Path, path: Path, me: LockHolder, text: bytes, what: str
) -> FolderLock | None:
    """Takes over the existing lock file ``path`` when its run is gone; refuses when it
    lives; ``None`` when the file went away or was replaced meanwhile."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        free = _flock(fd)
        holder, age = _read_holder(fd)
        if not _same_file(fd, path):
            os.close(fd)
            return None
        if (
            free is False
            or (holder is None and age < _YOUNG_LOCK_S)
            or (holder is not None and holder.alive())
        ):
            who = (
                holder.describe()
                if holder is not None
                else "a run that holds it (its lock file cannot be read yet)"
            )
            raise ValueError(
                f"{what}={str(folder)!r} is in use by another run: {who}; wait for it to "
                f"end or choose another folder (if no such run exists, remove {path})"
            )
        _write_all(fd, text, truncate=True)
    except BaseException:
        os.close(fd)
        raise
    gone = holder or LockHolder(0, socket.gethostname(), "a damaged lock file", "unknown")
    return FolderLock(path, fd, me, gone)


def _flock(fd: int) -> bool | None:
    """An exclusive ``flock`` on ``fd`` without waiting: ``True`` taken, ``False`` held
    through another open file, ``None`` where there are none."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks
        return None
    return True


def _read_holder(fd: int) -> tuple[LockHolder | None, float]:
    """The holder a lock file names (``None``: unreadable) and the file's age in seconds."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    age = time.time() - os.fstat(fd).st_mtime
    try:
        raw = json.loads(data.decode("utf-8"))
        start = raw.get("process_start")
        holder = LockHolder(
            int(raw["pid"]),
            str(raw["host"]),
            str(raw["command"]),
            str(raw["started"]),
            None if start is None else int(start),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, age
    return holder, age


def _write_all(fd: int, data: bytes, truncate: bool = False) -> None:
    if truncate:
        os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` is still the file open as ``fd``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


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
