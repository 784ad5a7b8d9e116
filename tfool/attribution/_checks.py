"""The attribution methods' argument checks (all raised before any model evaluation that does
real work)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfool import _tf

ModelFn = Callable[[tf.Tensor], tf.Tensor]


def _check_x(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2:
        raise ValueError(f"x has shape {x.shape}, expected a batch [N, ...] with N >= 1")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch; expected at least one image")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or infinite values")
    return x


def _check_int(name: str, value: Any, lower: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lower:
        raise ValueError(f"{name}={value!r} must be an integer >= {lower}")
    return int(value)


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is unknown; expected one of {list(allowed)}")
    return value


def _check_baselines(baselines: Any, x: np.ndarray, name: str = "baselines") -> np.ndarray:
    """Broadcasts a scalar, one image or one image per example to ``x``'s shape."""
    if baselines is None:
        return np.zeros_like(x)
    base = np.asarray(baselines, dtype=np.float32)
    if base.ndim == 0 or base.shape == x.shape[1:]:
        return np.broadcast_to(base, x.shape).copy()
    if base.shape != x.shape:
        raise ValueError(
            f"{name} has shape {base.shape}; expected a scalar, one image of shape "
            f"{x.shape[1:]} or one per example, {x.shape}"
        )
    if not np.all(np.isfinite(base)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return base.copy()


def _check_target(target: Any, x: np.ndarray, model_fn: ModelFn) -> np.ndarray:
    """One class index per image (int32 [N]) from an int or a sequence of N ints."""
    t = np.asarray(target)
    if t.dtype == bool or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"target={target!r} must be an integer class index or one per image")
    if t.ndim == 0:
        t = np.full(len(x), int(t))
    elif t.shape != (len(x),):
        raise ValueError(f"target has shape {t.shape}; expected a single int or shape ({len(x)},)")
    num_classes = _tf.num_classes(model_fn, x)
    bad = (t < 0) | (t >= num_classes)
    if bad.any():
        raise ValueError(
            f"target {t[bad][0]} is outside the model's {num_classes} classes "
            f"(expected 0..{num_classes - 1})"
        )
    return t.astype(np.int32)
