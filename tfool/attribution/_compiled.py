"""The compiled score and gradient steps of one model and score definition, cached per model."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfool import _tf, classifier
from tfool._tf import map_batches
from tfool.attribution._checks import ModelFn, _check_choice

#: What is attributed: the model's output, the class probability, or the cross-entropy loss.
SCORES = ("output", "probability", "loss")

# Images whose gradients one compiled call computes in saliency-like methods (bounds memory).
_GRADIENT_CHUNK = 256


class _Compiled:
    """The compiled score and gradient steps of one ``model_fn`` and score definition.

    Only a weak reference to ``model_fn`` is kept, so a cache entry never keeps a model alive.
    """

    def __init__(self, model_fn: ModelFn, from_logits: bool, score: str):
        self._model = _tf.weak_call(model_fn)
        self.from_logits = from_logits
        self.score = score
        self.scores = tf.function(self._scores, reduce_retracing=True)
        self.gradients = tf.function(self._gradients, reduce_retracing=True)
        self.path_gradients = tf.function(self._path_gradients, reduce_retracing=True)
        self.occluded_scores = tf.function(self._occluded_scores, reduce_retracing=True)

    def _score(self, points: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        out = self._model(points)
        if self.score == "output":
            picked = tf.gather(out, targets, axis=1, batch_dims=1)
        elif self.score == "probability":
            probs = tf.nn.softmax(out) if self.from_logits else out
            picked = tf.gather(probs, targets, axis=1, batch_dims=1)
        else:
            picked = keras.ops.sparse_categorical_crossentropy(
                targets, out, from_logits=self.from_logits
            )
        return tf.cast(picked, tf.float32)

    def _scores(self, points, targets):
        return self._score(points, targets)

    def _gradients(self, points, targets):
        return _tf.input_gradient(lambda p: self._score(p, targets), points)[0]

    def _path_gradients(self, x, baselines, rows, alphas, targets):
        start = tf.gather(baselines, rows)
        shape = tf.concat([tf.shape(alphas), tf.ones([tf.rank(x) - 1], tf.int32)], 0)
        points = start + tf.reshape(alphas, shape) * (tf.gather(x, rows) - start)
        return self._gradients(points, targets)

    def _occluded_scores(self, x, baselines, masks, targets):
        m = masks[:, None]
        occluded = x[None] * (1.0 - m) + baselines[None] * m  # [windows, N, ...]
        n = tf.shape(x)[0]
        k = tf.shape(masks)[0]
        flat = tf.reshape(occluded, tf.concat([[k * n], tf.shape(x)[1:]], 0))
        scores = self._score(flat, tf.tile(targets, [k]))
        return tf.reshape(scores, [k, n])


def _compiled(model_fn: ModelFn, from_logits: bool | None, score: str) -> _Compiled:
    if not callable(model_fn):
        raise ValueError(f"model_fn={model_fn!r} is not callable; expected a Keras model")
    _check_choice("score", score, SCORES)
    key = ("attribution", from_logits, score)
    return _tf.cached(
        model_fn, key, lambda: _Compiled(*_scored(model_fn, from_logits, score), score)
    )


def _scored(model_fn: ModelFn, from_logits: bool | None, score: str) -> tuple[ModelFn, bool]:
    """The model to differentiate and whether it returns logits: the ``output`` score is
    the model's own output; the others read a Keras model before its final softmax."""
    if score == "output":
        classifier.logits_model(model_fn, from_logits)  # a model tfool cannot read is refused
        return model_fn, from_logits is not False
    return classifier.logits_model(model_fn, from_logits)


def _input_gradients(
    compiled: _Compiled, x: np.ndarray, targets: np.ndarray, strategy
) -> np.ndarray:
    """d score / d x for every image, in steps of ``_GRADIENT_CHUNK`` images (each split
    across the replicas of ``strategy``)."""
    grads = map_batches(compiled.gradients, [x, targets], _GRADIENT_CHUNK, strategy)
    return grads.astype(np.float32)
