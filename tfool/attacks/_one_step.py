"""Single-step perturbations: FGSM, FGM-L2 and the max-normalised step from one factory, the
random-sign control, and the loss gradient and probabilities they are measured with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfool._tf import map_batches
from tfool.attacks._checks import (
    DEFAULT_BATCH_SIZE,
    ModelFn,
    _check_attack,
    _check_batch_size,
    _check_eps,
    _check_images,
    _check_norm,
    _Checked,
)
from tfool.attacks._steps import _dummy_labels, _fgm_fn, _grad_fn, _probs_fn, _resolve

# ----------------------------------------------------------------------------------------
# Public attacks
# ----------------------------------------------------------------------------------------


_SINGLE_STEP_DOC = """{summary}

    {details}

    ``y`` is the only optional argument that may be given by position (the fourth, as in
    every attack of this module); everything after it is keyword-only.

    Args:
        model_fn: A callable from a batch of images to logits (or probabilities, see
            ``from_logits``), e.g. a Keras classifier.
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]`` (excursions of float rounding,
            up to 1e-6 of the range, are clipped).
        eps: {eps}
        y: Integer class indices ``[N]`` in ``0..num_classes - 1``, or one integer used for
            every image: the labels to move away from, or the targets when ``targeted``.
            Floats and bools are refused, not truncated. ``None``: the model's own
            predictions on ``x``, which avoids label leaking.
        targeted: Move toward ``y`` instead of away from it (keyword-only).
        clip_min: Lowest allowed pixel value (keyword-only).
        clip_max: Highest allowed pixel value (keyword-only).
        least_likely: Target each image's least likely class (Kurakin et al.'s "step l.l.");
            implies ``targeted`` and needs ``y=None``.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        batch_size: Images per compiled step (the global batch under a strategy).
        strategy: Optional ``tf.distribute`` strategy; every batch is split over its replicas.

    Returns:
        The adversarial images, float32, the shape of ``x``.

    Raises:
        ValueError: ``eps < 0``, ``clip_min > clip_max``, ``x`` outside the clip range,
            ``y`` not integer, of the wrong shape or outside the model's classes,
            ``targeted`` without ``y``.
        TypeError: more than four positional arguments.
    """


def _single_step(
    kind: str, name: str, summary: str, details: str, eps_doc: str
) -> Callable[..., np.ndarray]:
    """A public single-step attack in direction ``kind`` (``_direction``): one signature,
    one implementation, one docstring template, three names."""

    def attack_fn(
        model_fn: ModelFn,
        x: np.ndarray,
        eps: float,
        y: np.ndarray | int | None = None,
        *,
        targeted: bool = False,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
        least_likely: bool = False,
        from_logits: bool | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        strategy: tf.distribute.Strategy | None = None,
    ) -> np.ndarray:
        c = _check_attack(
            model_fn, x, eps, y, targeted, least_likely, clip_min, clip_max, batch_size
        )
        if eps == 0:
            return c.x.copy()
        model_fn, from_logits = _resolve(model_fn, from_logits, c.x)
        fn = _fgm_fn(model_fn, kind, c.mode, c.targeted, bool(from_logits))
        scalars = [tf.constant(v, tf.float32) for v in (eps, clip_min, clip_max)]
        arrays = [c.x, _dummy_labels(c.y, len(c.x)), *scalars]
        return map_batches(fn, arrays, c.batch_size, strategy, replicated=(2, 3, 4))

    attack_fn.__name__ = attack_fn.__qualname__ = name
    attack_fn.__doc__ = _SINGLE_STEP_DOC.format(summary=summary, details=details, eps=eps_doc)
    return attack_fn


fgsm = _single_step(
    "sign",
    "fgsm",
    "The fast gradient sign method (Goodfellow et al. 2015): ``x + eps * sign(grad)``.",
    """``grad`` is the gradient of the cross-entropy loss with respect to the input. Untargeted,
    the step increases the loss of ``y``; targeted, it decreases the loss of the target ``y``
    (``x - eps * sign(grad)``). The result is clipped to ``[clip_min, clip_max]``.""",
    "Size of the step (L-infinity), >= 0.",
)
fgm_l2 = _single_step(
    "l2",
    "fgm_l2",
    "The fast gradient method under the L2 norm: ``x + eps * grad / |grad|_2``, clipped.",
    """``grad`` is the gradient of the cross-entropy loss with respect to the input; the step
    is taken against it when ``targeted``, as in ``fgsm``.""",
    "The L2 length of the step per image, >= 0.",
)
normalized_gradient = _single_step(
    "max",
    "normalized_gradient",
    "The post's max-normalised gradient step: ``x + eps * grad / max|grad|``, clipped.",
    """The maximum is taken per image, so the largest pixel change is exactly ``eps`` (before
    clipping) and the rest move in proportion to their gradient; the step is taken against
    the gradient when ``targeted``, as in ``fgsm``.""",
    "The largest pixel change per image (before clipping), >= 0.",
)


def fgm(
    model_fn: ModelFn,
    x: np.ndarray,
    eps: float,
    y: np.ndarray | int | None = None,
    *,
    norm: Any = "inf",
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    **kwargs: Any,
) -> np.ndarray:
    """The fast gradient method under a chosen norm: ``fgsm`` (``inf``) or ``fgm_l2`` (``2``).

    Args:
        model_fn: A callable from images to logits (or probabilities, see ``from_logits``).
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]``.
        eps: Size of the step under ``norm``, >= 0.
        y: Integer class indices ``[N]``, or one integer for every image, as in ``fgsm``;
            ``None``: the model's predictions. The last argument that may be positional.
        norm: ``'inf'`` (or ``np.inf``) or ``2`` (or ``'l2'``); keyword-only, like the rest.
        targeted: Move toward ``y``.
        clip_min: Lowest allowed pixel value.
        clip_max: Highest allowed pixel value.
        **kwargs: ``least_likely``, ``from_logits``, ``batch_size``, ``strategy`` as in
            ``fgsm``.

    Returns:
        The adversarial images, float32, the shape of ``x``.

    Raises:
        ValueError: an unknown ``norm``, or as ``fgsm``.
        TypeError: more than four positional arguments.
    """
    fn = fgsm if _check_norm(norm) == "inf" else fgm_l2
    return fn(
        model_fn, x, eps, y, targeted=targeted, clip_min=clip_min, clip_max=clip_max, **kwargs
    )


def random_sign_noise(
    x: np.ndarray, eps: float, *, seed: int = 0, clip_min: float = 0.0, clip_max: float = 1.0
) -> np.ndarray:
    """The control: ``x + eps * s`` with random signs ``s`` in {-1, +1}, clipped.

    The same L-infinity size as an FGSM step, but in a direction that ignores the model (so
    it takes neither ``model_fn`` nor ``y``); everything after ``eps`` is keyword-only.

    Args:
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]``.
        eps: Size of the perturbation, >= 0.
        seed: Seed of the signs (the same seed gives the same noise).
        clip_min: Lowest allowed pixel value.
        clip_max: Highest allowed pixel value.

    Returns:
        The perturbed images, float32, the shape of ``x``.

    Raises:
        ValueError: ``eps < 0``, ``clip_min > clip_max`` or ``x`` outside the clip range.
    """
    eps = _check_eps(eps)
    x = _check_images(x, clip_min, clip_max)
    signs = np.random.default_rng(seed).integers(0, 2, size=x.shape).astype(np.float32) * 2 - 1
    return np.clip(x + np.float32(eps) * signs, clip_min, clip_max).astype(np.float32)


def loss_gradient(
    model_fn: ModelFn,
    x: np.ndarray,
    y: np.ndarray | int | None = None,
    *,
    least_likely: bool = False,
    from_logits: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """The gradient of the cross-entropy loss of ``y`` with respect to the input.

    It takes no ``eps``, so ``y`` is its third and last positional argument; the rest are
    keyword-only.

    Args:
        model_fn: A callable from images to logits (or probabilities, see ``from_logits``).
        x: Images ``[N, ...]``.
        y: Integer class indices ``[N]``, or one integer for every image, as in ``fgsm``
            (floats and bools are refused); ``None``: the model's predictions.
        least_likely: Use each image's least likely class as ``y``.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        batch_size: Images per compiled step.
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        float32 gradients, the shape of ``x``.

    Raises:
        ValueError: bad ``x``, ``y`` or ``batch_size``.
    """
    x = np.asarray(x, np.float32)
    lo, hi = (float(np.min(x)), float(np.max(x))) if x.size else (0.0, 0.0)
    c = _check_attack(model_fn, x, 0.0, y, False, least_likely, lo, hi, batch_size)
    model_fn, from_logits = _resolve(model_fn, from_logits, c.x)
    return _gradients(model_fn, c, from_logits, strategy)[0]


def _gradients(model_fn, c: _Checked, from_logits, strategy) -> tuple[np.ndarray, np.ndarray]:
    """Loss gradients and the model's class probabilities at ``c.x``, in one pass."""
    fn = _grad_fn(model_fn, c.mode, bool(from_logits))
    grads, outputs = map_batches(fn, [c.x, _dummy_labels(c.y, len(c.x))], c.batch_size, strategy)
    probs = tf.nn.softmax(outputs, axis=-1).numpy() if from_logits else outputs
    return grads, probs


def probabilities(
    model_fn: ModelFn,
    x: np.ndarray,
    *,
    from_logits: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """The model's class probabilities for every image, in batches.

    Args:
        model_fn: A callable from images to logits (or probabilities).
        x: Images ``[N, ...]`` (any range: the model's answer on a perturbation itself is
            a valid question).
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        batch_size: Images per compiled step.
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        float32 probabilities ``[N, num_classes]``.
    """
    x = np.asarray(x, np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x has shape {x.shape}, expected a non-empty batch [N, ...] of images")
    model_fn, from_logits = _resolve(model_fn, from_logits, x)
    fn = _probs_fn(model_fn, bool(from_logits))
    return map_batches(fn, [x], _check_batch_size(batch_size), strategy)
