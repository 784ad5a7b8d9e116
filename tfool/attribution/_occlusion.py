"""Occlusion (Zeiler and Fergus 2014), with Captum's arguments and semantics."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfool._tf import fold_batches, run_batch
from tfool.attribution._checks import ModelFn, _check_baselines, _check_int, _check_target, _check_x
from tfool.attribution._compiled import _compiled


def _as_tuple(name: str, value: Any, ndim: int) -> tuple[int, ...]:
    values = (value,) * ndim if np.ndim(value) == 0 else tuple(value)
    if len(values) != ndim:
        raise ValueError(
            f"{name}={value!r} has {len(values)} entries; expected {ndim}, one per input "
            "dimension (e.g. (15, 15, 1) for a 28 x 28 x 1 image)"
        )
    for v in values:
        _check_int(name, v, 1)
    return tuple(int(v) for v in values)


def occlusion_windows(
    input_shape: Sequence[int],
    sliding_window_shapes: Sequence[int],
    strides: int | Sequence[int] | None = None,
) -> list[tuple[slice, ...]]:
    """The regions Captum's ``Occlusion`` covers, as slices of one input.

    Along each dimension the window starts at ``0, s, 2s, ...``:
    ``ceil((size - window) / s) + 1`` positions, the last one cut at the edge.

    Raises:
        ValueError: the window or strides do not match the input's dimensions, are not
            positive, or the window is larger than the input.
    """
    shape = tuple(int(d) for d in input_shape)
    window = _as_tuple("sliding_window_shapes", sliding_window_shapes, len(shape))
    steps = _as_tuple("strides", 1 if strides is None else strides, len(shape))
    if any(w > d for w, d in zip(window, shape, strict=True)):
        raise ValueError(
            f"sliding_window_shapes={window} is larger than the input {shape} in some dimension"
        )
    starts = [
        range(0, (math.ceil((d - w) / s) + 1) * s, s)
        for d, w, s in zip(shape, window, steps, strict=True)
    ]
    return [
        tuple(slice(b, min(b + w, d)) for b, w, d in zip(begin, window, shape, strict=True))
        for begin in itertools.product(*starts)
    ]


def occlusion(
    model_fn: ModelFn,
    x: np.ndarray,
    target: int | Sequence[int] | np.ndarray,
    sliding_window_shapes: Sequence[int],
    strides: int | Sequence[int] | None = None,
    baselines: float | np.ndarray = 0.0,
    perturbations_per_eval: int = 1,
    *,
    from_logits: bool | None = None,
    score: str = "output",
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """Occlusion (Zeiler and Fergus 2014), with Captum's arguments and semantics.

    A window slides over each input; inside it the input is replaced by the baseline. An
    element's attribution is the mean, over the windows covering it, of
    ``F(x) - F(x occluded)``.

    Args:
        model_fn: The classifier (see ``saliency``).
        x: Inputs ``[N, ...]``.
        target: One class for all images or one per image.
        sliding_window_shapes: Window shape, one entry per input dimension (channels too:
            ``(15, 15, 1)`` for MNIST, ``(15, 15, 3)`` for RGB).
        strides: Step of the window: ``None`` (1), one int for every dimension, or one per
            dimension.
        baselines: What fills the window: a scalar, one input or one per example.
        perturbations_per_eval: Windows evaluated per compiled call (each on all N inputs).
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        score: ``"output"``, ``"probability"`` or ``"loss"`` (see ``saliency``).
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        float32 array of ``x``'s shape (elements no window covers, possible only when a
        stride exceeds the window, are 0).

    Raises:
        ValueError: bad ``x``, ``target``, ``baselines``, window, strides or
            ``perturbations_per_eval``.
    """
    x = _check_x(x)
    windows = occlusion_windows(x.shape[1:], sliding_window_shapes, strides)
    base = _check_baselines(baselines, x)
    per_eval = _check_int("perturbations_per_eval", perturbations_per_eval, 1)
    compiled = _compiled(model_fn, from_logits, score)
    targets = _check_target(target, x, model_fn)

    x_t, base_t = tf.constant(x), tf.constant(base)
    full = run_batch(compiled.scores, (x_t, targets), strategy).astype(np.float64)
    total, cover = _occlusion_sums(
        compiled, (x_t, base_t, targets), full, windows, per_eval, strategy
    )
    out = np.where(cover > 0, total / np.maximum(cover, 1), 0.0)
    return out.astype(np.float32)


def _occlusion_sums(compiled, batch: tuple, full: np.ndarray, windows, per_eval: int, strategy):
    """Per element, the sum of ``F(x) - F(x occluded)`` over the windows covering it and
    their count, ``per_eval`` windows per compiled call."""
    x_t, base_t, targets = batch
    shape = tuple(x_t.shape)

    def add_windows(sums: tuple, rows: slice) -> tuple:
        total, cover = sums
        group = windows[rows]
        masks = np.zeros((per_eval, *shape[1:]), np.float32)  # padded: one trace
        for i, region in enumerate(group):
            masks[(i, *region)] = 1.0
        occluded = run_batch(  # the windows split across replicas; the images shared
            compiled.occluded_scores, (x_t, base_t, masks, targets), strategy, replicated=(0, 1, 3)
        )
        for i, region in enumerate(group):
            diff = (full - occluded[i]).reshape((-1,) + (1,) * (len(shape) - 1))
            total[(slice(None), *region)] += diff
            cover[region] += 1
        return total, cover

    sums = (np.zeros(shape, np.float64), np.zeros(shape[1:], np.int64))
    return fold_batches(add_windows, len(windows), per_eval, sums)
