"""Iterative attacks: BIM (Kurakin et al.) and PGD (Madry et al.), with Kurakin's step rule."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from tfool._tf import SplitBatch, fold_batches
from tfool.attacks._checks import (
    _TINY,
    DEFAULT_BATCH_SIZE,
    ModelFn,
    _check_attack,
    _check_eps,
    _check_norm,
)
from tfool.attacks._steps import _iter_fn, _labels_fn, _resolve


def kurakin_steps(eps: float, clip_min: float = 0.0, clip_max: float = 1.0) -> int:
    """Kurakin et al.'s BIM step count ``min(eps + 4, 1.25 eps)``, eps in 0..255 pixel units.

    Args:
        eps: The L-infinity budget in the units of ``[clip_min, clip_max]``.
        clip_min: Lowest pixel value.
        clip_max: Highest pixel value (the range is mapped to 0..255).

    Returns:
        The number of steps, rounded up (0 when ``eps`` is 0).
    """
    eps = _check_eps(eps)
    if not clip_max > clip_min:
        raise ValueError(f"clip_min={clip_min} must be less than clip_max={clip_max}")
    e = eps * 255.0 / (clip_max - clip_min)
    return int(math.ceil(min(e + 4.0, 1.25 * e) - 1e-9))


def _random_start(x, eps, norm, seed, clip_min, clip_max) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if norm == "inf":
        delta = rng.uniform(-eps, eps, size=x.shape)
    else:
        flat = rng.standard_normal(size=(len(x), x[0].size))
        flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), _TINY)
        radius = eps * rng.uniform(size=(len(x), 1)) ** (1.0 / x[0].size)
        delta = (flat * radius).reshape(x.shape)
    return np.clip(x + delta, clip_min, clip_max).astype(np.float32)


def bim(
    model_fn: ModelFn,
    x: np.ndarray,
    eps: float,
    y: np.ndarray | int | None = None,
    *,
    step_size: float | None = None,
    steps: int | None = None,
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    least_likely: bool = False,
    norm: Any = "inf",
    random_start: bool = False,
    seed: int = 0,
    from_logits: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """The basic iterative method (Kurakin et al. 2016): repeated small steps, projected.

    Each step moves by ``step_size`` along the sign of the gradient (``norm='inf'``) or the
    L2-normalised gradient (``norm=2``), then projects onto the ``eps``-ball around ``x`` and
    the clip range. The labels (``y=None``: the model's predictions on ``x``, or the least
    likely classes) are fixed once at the start.

    ``y`` is the only optional argument that may be given by position (the fourth, as in
    ``fgsm``); ``step_size``, ``steps`` and everything else are keyword-only.

    Args:
        model_fn: A callable from images to logits (or probabilities, see ``from_logits``).
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]``.
        eps: Radius of the ball (L-infinity or L2), >= 0.
        y: Integer class indices ``[N]`` in ``0..num_classes - 1``, or one integer used for
            every image (labels, or targets when ``targeted``). Floats and bools are
            refused, not truncated. ``None``: the model's predictions on ``x``.
        step_size: Size of one step (keyword-only). ``None``: Kurakin's 1/255 of the range
            when ``steps`` is ``None``, else ``2.5 * eps / steps`` (Madry et al.'s rule).
        steps: Number of steps, >= 0 (keyword-only). ``None``: ``kurakin_steps(eps)``.
        targeted: Move toward ``y``.
        clip_min: Lowest allowed pixel value.
        clip_max: Highest allowed pixel value.
        least_likely: Target each image's least likely class (Kurakin's "iter. l.l.");
            implies ``targeted`` and needs ``y=None``.
        norm: ``'inf'`` (or ``np.inf``) or ``2`` (or ``'l2'``).
        random_start: Start from a uniform random point in the ball (``pgd``).
        seed: Seed of the random start.
        from_logits: Whether ``model_fn`` returns logits, as in ``fgsm``.
        batch_size: Images per compiled step, as in ``fgsm``.
        strategy: Optional ``tf.distribute`` strategy, as in ``fgsm``.

    Returns:
        The adversarial images, float32, the shape of ``x``.

    Raises:
        ValueError: bad ``eps``, ``step_size``, ``steps``, ``norm``, clip range, ``x`` or
            ``y``, as in ``fgsm``.
        TypeError: more than four positional arguments.
    """
    norm = _check_norm(norm)
    if steps is not None and (int(steps) != steps or steps < 0):
        raise ValueError(f"steps={steps} must be an integer >= 0 (or None for Kurakin's rule)")
    if step_size is not None and not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size={step_size} must be a finite number > 0 (or None)")
    c = _check_attack(model_fn, x, eps, y, targeted, least_likely, clip_min, clip_max, batch_size)
    if steps is None:
        steps = kurakin_steps(eps, clip_min, clip_max) if clip_max > clip_min else 0
        default_size = (clip_max - clip_min) / 255.0
    else:
        default_size = 2.5 * eps / max(int(steps), 1)
    steps = int(steps)
    step_size = default_size if step_size is None else float(step_size)
    x0 = c.x
    start = _random_start(x0, eps, norm, seed, clip_min, clip_max) if random_start else x0
    if eps == 0 or steps == 0:
        return start.copy()
    model_fn, from_logits = _resolve(model_fn, from_logits, x0)
    step = _iter_fn(model_fn, norm, c.targeted, bool(from_logits))
    pick = _labels_fn(model_fn, c.mode) if c.y is None else None
    scalars = [tf.constant(v, tf.float32) for v in (eps, step_size, clip_min, clip_max)]

    def attack_batch(out: list, rows: slice) -> list:
        batch = SplitBatch(strategy, len(x0[rows]))
        (xb,) = batch.split(x0[rows])
        adv = batch.split(start[rows])[0] if random_start else xb
        yb = batch.run(pick, xb) if c.y is None else batch.split(c.y[rows])[0]
        for _ in range(steps):  # the batch stays split across the replicas between steps
            adv = batch.run(step, adv, xb, yb, *scalars)
        out.append(batch.gather(adv))
        return out

    return np.concatenate(fold_batches(attack_batch, len(x0), c.batch_size, []))


def pgd(
    model_fn: ModelFn,
    x: np.ndarray,
    eps: float,
    y: np.ndarray | int | None = None,
    *,
    seed: int = 0,
    **kwargs: Any,
) -> np.ndarray:
    """Projected gradient descent (Madry et al. 2018): ``bim`` from a random point in the ball.

    Args:
        model_fn: A callable from images to logits (or probabilities, see ``from_logits``).
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]``.
        eps: Radius of the ball (L-infinity or L2), >= 0.
        y: Integer class indices ``[N]``, or one integer for every image, as in ``bim``;
            ``None``: the model's predictions. The last argument that may be positional.
        seed: Seed of the random start (keyword-only, like all that follow).
        **kwargs: ``step_size``, ``steps``, ``targeted``, ``clip_min``, ``clip_max``,
            ``least_likely``, ``norm``, ``from_logits``, ``batch_size``, ``strategy`` as
            in ``bim``.

    Returns:
        The adversarial images, float32, the shape of ``x``.

    Raises:
        ValueError: as ``bim``.
        TypeError: more than four positional arguments.
    """
    return bim(model_fn, x, eps, y, random_start=True, seed=seed, **kwargs)
