"""Images of your own: from arrays, an npz file or a folder of image files; and
``load_dataset``, any dataset by name."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfool.data._dataset import ARRAY_KEYS, Dataset, _make, _read_npz, _split_labels
from tfool.data._mnist import load_fashion_mnist, load_mnist

logger = logging.getLogger(__package__)

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


def _check_split_args(test_fraction, seed) -> None:
    """Refuses a ``test_fraction`` outside (0, 1) and a ``seed`` that is not an int >= 0."""
    if isinstance(test_fraction, bool) or not (
        isinstance(test_fraction, (int, float, np.floating)) and 0 < test_fraction < 1
    ):
        raise ValueError(f"test_fraction={test_fraction!r} is not a fraction in (0, 1)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} is not an integer >= 0")


def _class_folders(folder: Path) -> tuple[str, ...]:
    """The class names: the folder's subfolders (hidden ones skipped), sorted; at least 2."""
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
    return class_names


def _class_files(folder: Path, class_names: tuple[str, ...]) -> tuple[list[Path], list[int]]:
    """Every class's image files in order, and their labels; at least 2 per class."""
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
    return files, labels


def _read_images(folder: Path, files: list[Path], size: tuple[int, int] | None) -> np.ndarray:
    """The images as uint8 ``[N, H, W, C]``: resized to ``size``, or all of one size; RGB
    for all when any is colour."""
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
    return np.stack(images)


def _split_per_class(
    y: np.ndarray, num_classes: int, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The shuffled train and test indices: ``test_fraction`` of each class (rounded, at
    least one image in each split) held out."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in range(num_classes):
        idx = rng.permutation(np.flatnonzero(y == label))
        cut = min(max(1, math.floor(test_fraction * len(idx) + 0.5)), len(idx) - 1)
        test_idx.append(idx[:cut])
        train_idx.append(idx[cut:])
    return rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(test_idx))


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
    _check_split_args(test_fraction, seed)
    folder = Path(path)
    class_names = _class_folders(folder)
    files, labels = _class_files(folder, class_names)
    x = _read_images(folder, files, size)
    y = np.asarray(labels, dtype=np.int64)
    train_idx, test_idx = _split_per_class(y, len(class_names), test_fraction, seed)
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
