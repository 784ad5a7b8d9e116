"""The attacks' graph pieces (loss gradient, step directions, projection) and their compiled
steps, cached per model so that sweeps and benchmarks trace once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfool import _tf, classifier
from tfool._tf import input_gradient
from tfool.attacks._checks import _TINY, ModelFn

# ----------------------------------------------------------------------------------------
# Graph pieces: loss gradient, step directions, projection
# ----------------------------------------------------------------------------------------


def _resolve(model_fn, from_logits, x: np.ndarray) -> tuple[Any, bool]:
    """The model to attack and whether it returns logits: a Keras model's final softmax is
    stripped (``tfool.classifier.logits_model``); outputs are checked once per model
    against what they are taken for (``tfool.classifier.probe``)."""
    fn, is_logits = classifier.logits_model(model_fn, from_logits)
    if len(x):
        _tf.cached(
            model_fn,
            ("probed", from_logits),
            lambda: classifier.probe(model_fn, x, from_logits) or True,
        )
    return fn, is_logits


def _log_probs(outputs: tf.Tensor, from_logits: bool) -> tf.Tensor:
    """Logits, or the log of probabilities (the same cross-entropy either way)."""
    if from_logits:
        return outputs
    return tf.math.log(tf.maximum(outputs, _TINY))


def _pick_labels(outputs: tf.Tensor, mode: str) -> tf.Tensor:
    if mode == "least_likely":
        return tf.argmin(outputs, axis=-1, output_type=tf.int64)
    return tf.argmax(outputs, axis=-1, output_type=tf.int64)


def _loss_grad(model_fn, x, y, mode: str, from_logits: bool):
    """Gradient of the per-example cross-entropy w.r.t. ``x``, and the model's outputs at ``x``."""

    def loss_and_outputs(points):
        outputs = model_fn(points)
        labels = y if mode == "given" else tf.stop_gradient(_pick_labels(outputs, mode))
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=_log_probs(outputs, from_logits)
        )
        return loss, outputs

    grad, (_, outputs) = input_gradient(loss_and_outputs, x)
    return grad, outputs


def _reduce_axes(t: tf.Tensor) -> list[int]:
    return list(range(1, len(t.shape)))


def _direction(g: tf.Tensor, kind: str) -> tf.Tensor:
    """The step direction: ``sign(g)``, ``g / |g|_2`` or ``g / max|g|``, per example."""
    if kind == "sign":
        return tf.sign(g)
    if kind == "l2":
        scale = tf.sqrt(tf.reduce_sum(tf.square(g), axis=_reduce_axes(g), keepdims=True))
    else:  # "max"
        scale = tf.reduce_max(tf.abs(g), axis=_reduce_axes(g), keepdims=True)
    return g / tf.maximum(scale, _TINY)


def _apply_step(x, g, size, kind: str, targeted: bool, clip_min, clip_max):
    """``x +- size * direction(g)``, clipped to the range (minus when targeted)."""
    step = size * _direction(g, kind)
    return tf.clip_by_value(x - step if targeted else x + step, clip_min, clip_max)


def _project(x_adv, x0, eps, norm: str, clip_min, clip_max):
    """Projects ``x_adv`` onto the eps-ball around ``x0`` and then the clip range."""
    delta = x_adv - x0
    if norm == "inf":
        delta = tf.clip_by_value(delta, -eps, eps)
    else:
        length = tf.sqrt(tf.reduce_sum(tf.square(delta), axis=_reduce_axes(delta), keepdims=True))
        delta = delta * tf.minimum(1.0, eps / tf.maximum(length, _TINY))
    return tf.clip_by_value(x0 + delta, clip_min, clip_max)


# ----------------------------------------------------------------------------------------
# Compiled steps, cached per model so that sweeps and benchmarks trace once
# ----------------------------------------------------------------------------------------


def _compiled(model_fn, key: tuple, build: Callable[[ModelFn], Callable]) -> Callable:
    """A ``tf.function`` built by ``build(model)``, cached per model and ``key``; it reaches
    the model through a weak reference, so the cache never keeps a model alive."""
    return _tf.cached(
        model_fn,
        ("attacks", *key),
        lambda: tf.function(build(_tf.weak_call(model_fn)), reduce_retracing=True),
    )


def _fgm_fn(model_fn, kind, mode, targeted, from_logits):
    def build(model):
        def step(x, y, eps, clip_min, clip_max):
            g, _ = _loss_grad(model, x, y, mode, from_logits)
            return _apply_step(x, g, eps, kind, targeted, clip_min, clip_max)

        return step

    return _compiled(model_fn, ("fgm", kind, mode, targeted, from_logits), build)


def _grad_fn(model_fn, mode, from_logits):
    def build(model):
        def step(x, y):
            return _loss_grad(model, x, y, mode, from_logits)

        return step

    return _compiled(model_fn, ("grad", mode, from_logits), build)


def _iter_fn(model_fn, norm, targeted, from_logits):
    kind = "sign" if norm == "inf" else "l2"

    def build(model):
        def step(x_adv, x0, y, eps, step_size, clip_min, clip_max):
            g, _ = _loss_grad(model, x_adv, y, "given", from_logits)
            moved = _apply_step(x_adv, g, step_size, kind, targeted, clip_min, clip_max)
            return _project(moved, x0, eps, norm, clip_min, clip_max)

        return step

    return _compiled(model_fn, ("iter", norm, targeted, from_logits), build)


def _labels_fn(model_fn, mode):
    def build(model):
        def labels(x):
            return _pick_labels(model(x), mode)

        return labels

    return _compiled(model_fn, ("labels", mode), build)


def _probs_fn(model_fn, from_logits):
    def build(model):
        def probs(x):
            out = model(x)
            return tf.nn.softmax(out, axis=-1) if from_logits else out

        return probs

    return _compiled(model_fn, ("probs", from_logits), build)


def _dummy_labels(y: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, np.int64) if y is None else y
