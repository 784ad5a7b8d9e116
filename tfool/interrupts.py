"""Ctrl-C and SIGTERM delivered at safe points of tfool's loops, and writes they cannot cut.

A signal that lands inside TensorFlow, NumPy or a callback can leave the interpreter in a
bad state (a ``SystemError`` from the middle of a list operation) or a loop half-updated.
Inside ``safe_points()`` the first SIGINT or SIGTERM only records the request; the loops of
tfool (backworking steps, training steps, batches, retraining rounds) call ``check()``
between steps, and that raises ``KeyboardInterrupt`` there, where the loop keeps what it
has. A second signal before the loop reaches a safe point interrupts at once (as plain
Python would). ``protected()`` holds both signals back while results are written, so the
files are complete; a signal that arrived meanwhile counts once the writes are done.

Outside ``safe_points()`` (a notebook, a library user) nothing changes: Ctrl-C raises
``KeyboardInterrupt`` wherever it lands, and ``check()`` does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator

logger = logging.getLogger(__name__)

#: The signals handled like Ctrl-C.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    active = False  # inside safe_points()
    requested = False  # a signal waits for the next safe point
    signals = 0  # signals received


_state = _State()


def _handler(signum, frame) -> None:
    _state.signals += 1
    name = signal.Signals(signum).name
    if _state.requested:  # a second signal before a safe point: stop at once
        _state.requested = False
        raise KeyboardInterrupt(f"{name} (second signal)")
    _state.requested = True
    logger.warning("%s: stopping at the next safe point (send it again to stop at once)", name)


@contextlib.contextmanager
def safe_points() -> Iterator[None]:
    """Within this block SIGINT and SIGTERM are delivered at ``check()`` calls.

    Only the main thread can install signal handlers; elsewhere the block changes nothing.
    A signal the process ignores when the block starts stays ignored.
    """
    if threading.current_thread() is not threading.main_thread() or _state.active:
        yield
        return
    # A signal the process ignores (SIGINT in a shell's background job, under nohup) stays
    # ignored.
    previous = {s: h for s in SIGNALS if (h := signal.getsignal(s)) is not signal.SIG_IGN}
    _state.active, _state.requested, _state.signals = True, False, 0
    for s in previous:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _state.active = _state.requested = False


def check() -> None:
    """A safe point: raises ``KeyboardInterrupt`` when a signal is waiting.

    Raises:
        KeyboardInterrupt: a SIGINT or SIGTERM arrived since the last safe point.
    """
    if _state.requested:
        _state.requested = False
        raise KeyboardInterrupt("stopped at a safe point")


def requested() -> bool:
    """Whether a signal waits for the next safe point."""
    return _state.requested


def interrupted() -> bool:
    """Whether any SIGINT or SIGTERM arrived inside the current ``safe_points()`` block."""
    return _state.signals > 0


@contextlib.contextmanager
def protected() -> Iterator[None]:
    """Holds SIGINT and SIGTERM back while the block runs (results being written); they
    count once it is done, as if they came then. Does nothing outside the main thread.

    (Blocking the signals with ``pthread_sigmask`` is not enough: TensorFlow's threads
    would still take them. The block's own handler only notes them.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: h for s in SIGNALS if (h := signal.getsignal(s)) is not signal.SIG_IGN}
    for s in previous:
        signal.signal(s, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in held[:1]:  # one signal counts: the writes are done
            name = signal.Signals(signum).name
            logger.warning("%s arrived while results were written; they are complete", name)
            os.kill(os.getpid(), signum)
