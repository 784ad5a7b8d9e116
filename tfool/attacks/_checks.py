"""The attacks' argument checks, all run before any work."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfool import _tf
from tfool._tf import is_finite_number

NORMS = ("inf", "2")
DEFAULT_BATCH_SIZE = 500

_NORM_ALIASES = {"inf": "inf", "linf": "inf", "2": "2", "l2": "2"}
_TINY = 1e-12
_RANGE_SLACK = 1e-6
ModelFn = Callable[[tf.Tensor], tf.Tensor]


def _check_eps(eps: float, name: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.number)):
        raise ValueError(f"{name}={eps!r} is a {type(eps).__name__}; expected a number >= 0")
    eps = float(eps)
    if not (is_finite_number(eps) and eps >= 0):
        raise ValueError(f"{name}={eps} must be a finite number >= 0")
    return eps


def _check_input_shape(model_fn, x: np.ndarray) -> None:
    """Images of another shape than a Keras model's input are refused by name."""
    inputs = getattr(model_fn, "inputs", None)
    if not inputs or len(inputs) != 1:
        return
    expected = tuple(inputs[0].shape[1:])
    if len(expected) != x.ndim - 1 or any(
        e is not None and e != got for e, got in zip(expected, x.shape[1:])
    ):
        shown = ", ".join("?" if e is None else str(e) for e in expected)
        raise ValueError(
            f"x has shape {x.shape}; the model {getattr(model_fn, 'name', '')!r} expects "
            f"[N, {shown}] (add the channel axis with x[..., None] if it is missing)"
        )


def _check_images(x: Any, clip_min: float, clip_max: float) -> np.ndarray:
    clip_min, clip_max = float(clip_min), float(clip_max)
    if not (math.isfinite(clip_min) and math.isfinite(clip_max)):
        raise ValueError(f"clip_min={clip_min}, clip_max={clip_max} must be finite")
    if clip_min > clip_max:
        raise ValueError(f"clip_min={clip_min} is greater than clip_max={clip_max}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x has shape {x.shape}, expected a non-empty batch [N, ...] of images")
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("x contains NaN or infinite values")
    slack = _RANGE_SLACK * max(1.0, clip_max - clip_min)  # float rounding of scaled images
    if lo < clip_min - slack or hi > clip_max + slack:
        raise ValueError(
            f"x has values in [{lo:g}, {hi:g}], outside the clip range "
            f"[clip_min={clip_min:g}, clip_max={clip_max:g}]"
        )
    return np.clip(x, clip_min, clip_max) if lo < clip_min or hi > clip_max else x


def _check_norm(norm: Any) -> str:
    key = "inf" if norm == np.inf else str(norm).lower()
    if key not in _NORM_ALIASES:
        raise ValueError(f"norm={norm!r} is not supported; expected one of np.inf, 'inf', 2, 'l2'")
    return _NORM_ALIASES[key]


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be an integer >= 1")
    return int(batch_size)


_LABELS_EXPECTED = "integer class indices of shape ({n},), or one integer for every image"


def _contains_bool(y: Any) -> bool:
    """Whether ``y`` is a bool or a (nested) list or tuple holding one: NumPy would read
    ``[True, 2]`` as the integers ``[1, 2]``."""
    if isinstance(y, (bool, np.bool_)):
        return True
    return isinstance(y, (list, tuple)) and any(_contains_bool(v) for v in y)


def _label_array(y: Any, n: int, name: str = "y") -> np.ndarray:
    """``y`` as int64 class indices ``[n]``; a scalar is broadcast to every image.

    Only the type and shape are checked here (no model call); ``_check_label_range`` checks
    the values against the model's classes.
    """
    expected = _LABELS_EXPECTED.format(n=n)
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={y!r} is not an array; expected {expected}") from None
    if _contains_bool(y) or arr.dtype == bool:
        shown = f"{name}={arr.item()!r}" if arr.ndim == 0 else f"{name} holds bools"
        raise ValueError(f"{shown}; expected {expected} (a bool is not a class index)")
    if not np.issubdtype(arr.dtype, np.integer):
        shown = f"{name}={arr.item()!r}" if arr.ndim == 0 else name
        first = "" if arr.ndim == 0 or arr.size == 0 else f" (first entry {arr.flat[0].item()!r})"
        cast = (
            f" (cast with {name}.astype(int) if the values are whole numbers)"
            if np.issubdtype(arr.dtype, np.floating)
            else ""
        )
        raise ValueError(f"{shown} has dtype {arr.dtype}{first}; expected {expected}{cast}")
    if arr.ndim == 0:
        arr = np.full(n, arr.item(), dtype=np.int64)
    if arr.shape != (n,):
        hint = f" (one-hot labels: pass {name}.argmax(-1))" if arr.ndim == 2 else ""
        raise ValueError(
            f"{name} has shape {arr.shape}, expected ({n},) (one class index per image) "
            f"or a scalar{hint}"
        )
    return arr.astype(np.int64)


def _check_label_range(y: np.ndarray, num_classes: int, name: str = "y") -> np.ndarray:
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"{name} has class indices in [{y.min()}, {y.max()}], expected 0..{num_classes - 1}"
        )
    return y


def _check_labels(y: Any, n: int, num_classes: int, name: str = "y") -> np.ndarray:
    return _check_label_range(_label_array(y, n, name), num_classes, name)


def _label_mode(y: Any, targeted: bool, least_likely: bool) -> str:
    """How the attack's labels are chosen: ``given``, ``predicted`` or ``least_likely``."""
    if least_likely:
        if y is not None:
            raise ValueError("least_likely=True picks the target itself; pass y=None")
        return "least_likely"
    if targeted and y is None:
        raise ValueError("targeted=True needs the target classes y (or least_likely=True)")
    return "predicted" if y is None else "given"


@dataclasses.dataclass(frozen=True)
class _Checked:
    x: np.ndarray
    y: np.ndarray | None
    mode: str
    targeted: bool
    batch_size: int


def _check_attack(model_fn, x, eps, y, targeted, least_likely, clip_min, clip_max, batch_size):
    if not callable(model_fn):
        raise ValueError(f"model_fn={model_fn!r} is not callable; expected a Keras classifier")
    _check_eps(eps)
    x = _check_images(x, clip_min, clip_max)
    _check_input_shape(model_fn, x)
    batch_size = _check_batch_size(batch_size)
    mode = _label_mode(y, targeted, least_likely)
    if y is not None:  # type and shape first: a bad y is refused before the model runs
        y = _check_label_range(_label_array(y, len(x)), _tf.num_classes(model_fn, x))
    return _Checked(x, y, mode, bool(targeted or least_likely), batch_size)
