"""The training set of a round: the data plus negatives, zero and noise images, soft targets."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from tfool.backwork import BackworkResult
from tfool.data import Dataset, ImageClassSet
from tfool.retrain._config import check_mode

#: ``AugmentedData.origin`` codes: where each training row came from.
ORIGIN_DATA, ORIGIN_NEGATIVE, ORIGIN_ZERO, ORIGIN_NOISE = 0, 1, 2, 3
NEGATIVE_CLASS_NAME = "negative"


def negative_class_name(class_names: Sequence[str]) -> str:
    """The name of the extra class: ``NEGATIVE_CLASS_NAME``, or with ``_`` appended until
    it differs from every class name of the data (which may have a class "negative")."""
    name = NEGATIVE_CLASS_NAME
    while name in class_names:
        name += "_"
    return name


@dataclasses.dataclass(frozen=True, eq=False)
class AugmentedData(ImageClassSet):
    """A training set with soft targets: the data plus negatives, zero and noise images.

    It has the fields ``tfool.models.train`` reads (``x_train, y_train, x_test, y_test``);
    ``y_train`` holds one target distribution per row, so training uses categorical
    cross-entropy.

    Attributes:
        x_train: float32 images ``[N, H, W, C]``, shuffled.
        y_train: float32 targets ``[N, K]``, each row summing to 1 (``K`` is the data's
            classes, plus one in ``extra_class`` mode).
        x_test: The data's test images (a copy).
        y_test: The data's int64 test labels (a copy).
        class_names: ``K`` names (``negative`` last in ``extra_class`` mode).
        source: The data's source.
        name: The data's name.
        mode: ``uniform`` or ``extra_class``.
        origin: int8 ``[N]``: ``ORIGIN_DATA``, ``ORIGIN_NEGATIVE``, ``ORIGIN_ZERO`` or
            ``ORIGIN_NOISE`` per row.
        seed: The seed of the noise images and of the shuffle.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    name: str
    mode: str
    origin: np.ndarray
    seed: int

    @property
    def hard_labels(self) -> np.ndarray:
        """int64 ``[N]``: the class of one-hot rows, -1 for uniform (soft) rows."""
        one_hot = self.y_train.max(axis=1) == 1.0
        return np.where(one_hot, self.y_train.argmax(axis=1), -1).astype(np.int64)


def check_dataset(data) -> None:
    if not isinstance(data, Dataset):
        raise ValueError(
            f"data is a {type(data).__name__}, expected a tfool.data.Dataset with integer labels"
        )


def augment_with_negatives(
    data: Dataset,
    negatives: np.ndarray,
    mode: str = "uniform",
    num_zero: int = 800,
    num_noise: int = 800,
    seed: int = 0,
) -> AugmentedData:
    """The training set plus negatives, all-zero and uniform-noise images, shuffled.

    ``uniform`` (the MNIST post): every added image gets the uniform target ``1/C`` over
    the ``C`` classes. ``extra_class`` (Nguyen et al. 2015): every added image is labelled
    with a new class ``C``; the targets have ``C + 1`` columns. ``control`` and
    ``adversarial``: nothing is added (the negatives are checked, then left out). The data's own images keep one-hot
    targets and, for a given seed, the same order among themselves in every mode (the
    added rows are interleaved). Nothing of ``data`` or ``negatives`` is modified.

    Args:
        data: The original dataset (integer labels).
        negatives: Backworked images ``[M, H, W, C]`` or ``[L, E, H, W, C]`` (a
            ``BackworkResult.images``); ``M`` may be 0.
        mode: ``uniform``, ``extra_class``, ``control`` or ``adversarial``.
        num_zero: All-zero images to add, >= 0.
        num_noise: Uniform-noise images in [0, 1] to add, >= 0.
        seed: Seed of the noise images and of the shuffle (``np.random.default_rng``).

    Returns:
        A new ``AugmentedData``.

    Raises:
        ValueError: an unknown mode, a negative count, a dataset that is not a ``Dataset``,
            negatives of another image shape or with non-finite pixels.
    """
    check_mode(mode)
    check_dataset(data)
    negatives = _checked_negatives(data, negatives, num_zero, num_noise)
    if mode in ("control", "adversarial"):
        negatives, num_zero, num_noise = negatives[:0], 0, 0
    rng, order_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 0])
    added = np.concatenate(
        [
            negatives,
            np.zeros((int(num_zero), *data.image_shape), np.float32),
            rng.uniform(0.0, 1.0, size=(int(num_noise), *data.image_shape)).astype(np.float32),
        ]
    )
    x = np.concatenate([data.x_train, added])
    y = _targets(data, mode, len(added))
    origin = np.concatenate(
        [
            np.full(len(data.x_train), ORIGIN_DATA, np.int8),
            np.full(len(negatives), ORIGIN_NEGATIVE, np.int8),
            np.full(int(num_zero), ORIGIN_ZERO, np.int8),
            np.full(int(num_noise), ORIGIN_NOISE, np.int8),
        ]
    )
    # Sort keys: the data rows' keys come first from their own stream, so their order
    # among themselves does not depend on how many rows are added.
    keys = np.concatenate([order_rng.random(len(data.x_train)), order_rng.random(len(added))])
    order = np.argsort(keys, kind="stable")
    extra = (negative_class_name(data.class_names),) if mode == "extra_class" else ()
    return AugmentedData(
        x_train=x[order],
        y_train=y[order],
        x_test=data.x_test.copy(),
        y_test=data.y_test.copy(),
        class_names=tuple(data.class_names) + extra,
        source=data.source,
        name=data.name,
        mode=mode,
        origin=origin[order],
        seed=int(seed),
    )


def _checked_negatives(data: Dataset, negatives, num_zero, num_noise) -> np.ndarray:
    """The negatives as float32 ``[M, H, W, C]``, after the counts and the negatives are
    checked (``augment_with_negatives``' errors)."""
    for name, value in (("num_zero", num_zero), ("num_noise", num_noise)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name}={value} must be an integer >= 0")
    shape = data.image_shape
    negatives = np.asarray(negatives, np.float32)
    if negatives.ndim < len(shape) or tuple(negatives.shape[-len(shape) :]) != shape:
        raise ValueError(
            f"negatives have shape {negatives.shape}, expected [M, {', '.join(map(str, shape))}]"
            " or [L, E, ...] images of the data's shape"
        )
    negatives = negatives.reshape(-1, *shape)
    if not np.all(np.isfinite(negatives)):
        raise ValueError("negatives contain non-finite pixels (nan or inf)")
    return negatives


def _targets(data: Dataset, mode: str, num_added: int) -> np.ndarray:
    """float32 targets: one-hot for the data's rows, then ``num_added`` rows of the added
    images' target (uniform, or the extra class in ``extra_class`` mode)."""
    num_classes = data.num_classes
    width = num_classes + (mode == "extra_class")
    added_target = np.zeros(width, np.float32)
    if mode == "uniform":
        added_target[:] = 1.0 / num_classes
    elif mode == "extra_class":
        added_target[num_classes] = 1.0
    return np.concatenate(
        [
            np.eye(width, dtype=np.float32)[data.y_train],
            np.broadcast_to(added_target, (num_added, width)),
        ]
    )


def flat_negatives(result: BackworkResult) -> tuple[np.ndarray, np.ndarray]:
    """``(images [L*E, ...], labels [L*E])`` of a backworking result."""
    per = result.images.shape[1]
    return result.images.reshape(-1, *result.images.shape[2:]), np.repeat(result.labels, per)
