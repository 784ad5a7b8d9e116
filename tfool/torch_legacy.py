"""Reads PyTorch state dicts in the legacy (pre-zip) serialisation, without PyTorch.

A legacy ``.pth`` file is a sequence of pickles: a magic number, the protocol version, a
dict describing the writer's machine, then the state dict itself, whose tensors refer to
their storages by *persistent ids* (``("storage", torch.FloatStorage, key, device,
numel, view)``), then the list of storage keys in the order their raw bytes follow: for
each one, an int64 element count and the little-endian elements.

Only plain data is unpickled: ``collections.OrderedDict``, tensor rebuilds and storage
types. Anything else in the file (arbitrary classes or functions) is refused, so reading a
file cannot run its code.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

#: The first pickle of a legacy file.
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
#: The legacy protocol version the second pickle holds.
PROTOCOL_VERSION = 1001

#: torch storage types and the little-endian dtypes of their elements.
STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclasses.dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class _StorageType:
    name: str


@dataclasses.dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ValueError(f"storage {self.storage.key} has no data")
        if not self.size:
            return np.array(data[self.offset])
        end = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or any(s < 0 for s in self.stride) or end > len(data):
            raise ValueError(
                f"a tensor of size {self.size}, stride {self.stride} at offset {self.offset} "
                f"reaches past its storage of {len(data)} elements"
            )
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * data.itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view, order="C")  # a contiguous, writable copy


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor refers to something that is not a storage")
    return _Tensor(storage, int(storage_offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    """Resolves only the names a state dict needs; persistent ids become storages."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"{module}.{name} is not part of a plain state dict; refusing to load it"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        kind, key, _device, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if not isinstance(kind, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {kind!r}")
        if key not in self._storages:
            self._storages[key] = _Storage(key, np.dtype(STORAGE_DTYPES[kind.name]), numel)
        return self._storages[key]


def _tensors(obj, prefix: str = ""):
    """Yields ``(name, _Tensor)`` for every tensor of a (possibly nested) state dict."""
    if isinstance(obj, _Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every tensor of a legacy-format PyTorch state dict as a NumPy array.

    Args:
        path: A ``.pth`` / ``.pt`` file written by ``torch.save`` with
            ``_use_new_zipfile_serialization=False`` (every file before PyTorch 1.6).

    Returns:
        ``{name: array}`` in the file's order, with the tensors' shapes (``OIHW`` for
        convolutions) and dtypes.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a legacy PyTorch file (a zip-format file says so), is
            truncated, or holds something other than tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PyTorch file {str(path)!r} does not exist")
    with path.open("rb") as f:
        head = f.read(4)
        if head.startswith(b"PK"):
            raise ValueError(
                f"{str(path)!r} is a zip-format PyTorch file (PyTorch 1.6 and later); "
                "only the legacy format is read here"
            )
        f.seek(0)
        storages: dict[str, _Storage] = {}
        try:
            if pickle.load(f) != MAGIC_NUMBER:
                raise ValueError("wrong magic number")
            version = pickle.load(f)
            if version != PROTOCOL_VERSION:
                raise ValueError(f"protocol version {version}, expected {PROTOCOL_VERSION}")
            info = pickle.load(f)
            if not isinstance(info, dict) or not info.get("little_endian", True):
                raise ValueError("written on a big-endian machine")
            state = _Unpickler(f, storages).load()
            keys = pickle.load(f)
            for key in keys:
                storage = storages[str(key)]
                (count,) = struct.unpack("<q", f.read(8))
                if count != storage.numel:
                    raise ValueError(
                        f"storage {key} holds {count} elements, its tensors say {storage.numel}"
                    )
                raw = f.read(count * storage.dtype.itemsize)
                if len(raw) != count * storage.dtype.itemsize:
                    raise ValueError(f"the file ends inside storage {key}")
                storage.data = np.frombuffer(raw, storage.dtype)
            tensors = {name: t.materialise() for name, t in _tensors(state)}
        except (pickle.UnpicklingError, EOFError, struct.error, KeyError, ValueError) as err:
            raise ValueError(
                f"{str(path)!r} is not a readable legacy PyTorch state dict: {err}"
            ) from err
    if not tensors:
        raise ValueError(f"{str(path)!r} holds no tensors")
    return tensors
