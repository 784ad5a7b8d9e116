"""The ``Dataset`` of every loader, and the checks that turn four arrays into one."""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PIXELS_EXPECTED = "uint8 0..255 or floats in [0, 1]"
#: The arrays of an npz file (keras' ``mnist.npz``, or ``load_arrays``).
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


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
