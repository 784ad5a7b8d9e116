"""Atomic writes: JSON, NPZ, CSV, text and figures go via a temporary file and a rename."""

from __future__ import annotations

import contextlib
import csv
import io as _stdio
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tfool.io._recording import _written


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
