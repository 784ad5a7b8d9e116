"""Runtime plumbing every method shares: compiled functions cached per model, class counts,
freed memory handed back."""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached(owner: Any, key: tuple, build: Callable[[], Any]) -> Any:
    """``build()``'s result, made once per ``owner`` (a model, a strategy) and ``key``.

    The cache holds ``owner`` weakly, so it never keeps a model alive (what ``build`` makes
    must reach the model through ``weak_call``); an owner that cannot be weakly referenced
    gets a fresh ``build()`` on every call.
    """
    try:
        per_owner = _CACHE.setdefault(owner, {})
    except TypeError:
        return build()
    if key not in per_owner:
        per_owner[key] = build()
    return per_owner[key]


def weak_call(fn: Callable) -> Callable:
    """``fn``, called through a weak reference when it can be weakly referenced."""
    try:
        ref = weakref.ref(fn)
    except TypeError:
        return fn
    return lambda *args, **kwargs: ref()(*args, **kwargs)


def num_classes(model_fn: Callable, x: np.ndarray | None = None) -> int:
    """The number of outputs of a classifier, from its Keras graph when known, else from one
    forward pass on ``x[:1]``.

    Raises:
        ValueError: the model does not return ``[batch, classes]``, or the count is not in
            its graph and no ``x`` is given.
    """
    outputs = getattr(model_fn, "outputs", None)
    if outputs and len(outputs) == 1 and len(outputs[0].shape) == 2 and outputs[0].shape[-1]:
        return int(outputs[0].shape[-1])
    if x is None:
        raise ValueError("the model's class count is not in its graph; pass images to probe it")
    out = model_fn(tf.constant(np.asarray(x)[:1]))
    if len(out.shape) != 2:
        raise ValueError(
            f"model_fn returned shape {tuple(out.shape)} for one image; expected [batch, classes]"
        )
    return int(out.shape[-1])


def release_free_memory() -> bool:
    """Hands memory freed by the process back to the system (glibc's ``malloc_trim``).

    Large transient buffers (a reference set built label by label) are freed in pieces
    that glibc may keep resident; trimming returns them, so the peak resident memory of a
    run is what it holds rather than what it once held. Does nothing elsewhere.

    Returns:
        Whether memory was trimmed.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False
