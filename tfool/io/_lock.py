"""The lock file that keeps two runs out of one output folder."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import shlex
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: the pid in the lock file is all there is
    fcntl = None

logger = logging.getLogger(__package__)


#: The lock file a run keeps in its output folder while it runs.
LOCK_NAME = ".tfool.lock"

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
