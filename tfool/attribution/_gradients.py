"""The gradient methods: saliency, gradient x input and the backworking post's salient
features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfool.attribution._checks import ModelFn, _check_int, _check_target, _check_x
from tfool.attribution._compiled import _compiled, _input_gradients


def saliency(
    model_fn: ModelFn,
    x: np.ndarray,
    target: int | Sequence[int] | np.ndarray,
    absolute: bool = True,
    *,
    from_logits: bool | None = None,
    score: str = "output",
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """The input gradient of the target score (Simonyan et al. 2014; Captum's ``Saliency``).

    Args:
        model_fn: A classifier, ``[N, ...] -> [N, classes]`` (a Keras model or any callable
            on tensors), returning logits unless ``from_logits=False``.
        x: A batch of inputs ``[N, ...]`` of any shape the model takes.
        target: The class attributed: one int for all images or one per image.
        absolute: Return ``|gradient|`` (Captum's default) instead of the signed gradient.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        score: What is differentiated: ``"output"`` (the model's output for ``target``: the
            logit, or the probability of a probability model), ``"probability"`` (softmax
            applied when ``from_logits``) or ``"loss"`` (the cross-entropy of ``target``).
        strategy: Optional ``tf.distribute`` strategy; each batch is split across its replicas.

    Returns:
        float32 array of ``x``'s shape.

    Raises:
        ValueError: empty or non-finite ``x``, ``target`` out of range or of the wrong
            shape, an unknown ``score``.
    """
    x = _check_x(x)
    compiled = _compiled(model_fn, from_logits, score)
    targets = _check_target(target, x, model_fn)
    grads = _input_gradients(compiled, x, targets, strategy)
    return np.abs(grads) if absolute else grads


def _max_normalize(values: np.ndarray) -> np.ndarray:
    """Divides each example by its largest absolute value (all-zero examples stay zero)."""
    flat = np.abs(values.reshape(len(values), -1)).max(axis=1)
    scale = np.where(flat > 0, flat, 1.0).reshape((-1,) + (1,) * (values.ndim - 1))
    return (values / scale).astype(np.float32)


def gradient_x_input(
    model_fn: ModelFn,
    x: np.ndarray,
    target: int | Sequence[int] | np.ndarray,
    absolute_gradient: bool = True,
    normalize: bool = True,
    *,
    from_logits: bool | None = None,
    score: str = "output",
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """Gradient times input, as the training-attribution post computes it.

    ``|d score / dx| * x``, then divided per example by its maximum absolute value.
    ``absolute_gradient=False, normalize=False`` is Captum's ``InputXGradient``.

    Args:
        model_fn: The classifier (see ``saliency``).
        x: Inputs ``[N, ...]``.
        target: One class for all images or one per image.
        absolute_gradient: Multiply the input by ``|gradient|`` (the post) rather than the
            signed gradient.
        normalize: Divide each example by its largest absolute value.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        score: ``"output"``, ``"probability"`` or ``"loss"`` (see ``saliency``).
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        float32 array of ``x``'s shape.

    Raises:
        ValueError: as ``saliency``.
    """
    x = _check_x(x)
    compiled = _compiled(model_fn, from_logits, score)
    targets = _check_target(target, x, model_fn)
    grads = _input_gradients(compiled, x, targets, strategy)
    product = (np.abs(grads) if absolute_gradient else grads) * x
    return _max_normalize(product) if normalize else product.astype(np.float32)


def salient_features(
    model_fn: ModelFn,
    x: np.ndarray,
    target: int | Sequence[int] | np.ndarray,
    num_keep: int = 200,
    *,
    from_logits: bool | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """The backworking post's salient features: top input elements of ``d p[target] / dx``.

    The gradient of the target probability, positive part; the ``num_keep`` largest
    elements of each example (ties broken by position) are 1, the rest 0. Elements whose
    gradient is not positive are never kept, so fewer than ``num_keep`` may be 1.

    Args:
        model_fn: The classifier (see ``saliency``).
        x: Inputs ``[N, ...]`` (for MNIST every element is a pixel).
        target: One class for all images or one per image.
        num_keep: Elements kept per example (1 .. elements per example).
        from_logits: Whether ``model_fn`` returns logits (then a softmax gives p).
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        float32 mask of 0.0 / 1.0 of ``x``'s shape.

    Raises:
        ValueError: bad ``x`` or ``target``, or ``num_keep`` outside 1 .. elements.
    """
    x = _check_x(x)
    size = int(np.prod(x.shape[1:]))
    keep = _check_int("num_keep", num_keep, 1)
    if keep > size:
        raise ValueError(f"num_keep={keep} exceeds the {size} elements of one input")
    compiled = _compiled(model_fn, from_logits, "probability")
    targets = _check_target(target, x, model_fn)
    grads = np.maximum(_input_gradients(compiled, x, targets, strategy), 0.0)
    flat = grads.reshape(len(x), -1)
    order = np.argsort(-flat, axis=1, kind="stable")[:, :keep]
    mask = np.zeros_like(flat)
    np.put_along_axis(mask, order, 1.0, axis=1)
    mask[flat <= 0] = 0.0
    return mask.reshape(x.shape).astype(np.float32)
