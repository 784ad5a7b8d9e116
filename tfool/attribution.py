"""Attributions: which input pixels a classifier's decision rests on (Captum's methods in TF2)."""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfool import _tf, classifier
from tfool._tf import batch_slices, map_batches, run_batch

#: The integrated-gradients quadrature rules, as Captum names them.
IG_METHODS = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)
#: How the noise tunnel combines the attributions of the noisy copies.
NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")
#: What is attributed: the model's output, the class probability, or the cross-entropy loss.
SCORES = ("output", "probability", "loss")
#: The methods ``attribute_all`` computes by default, in column order.
DEFAULT_METHODS = (
    "saliency",
    "gradient_x_input",
    "integrated_gradients",
    "noise_tunnel",
    "occlusion",
)
#: Every method ``attribute_all`` knows.
ALL_METHODS = (*DEFAULT_METHODS, "salient_features")

ModelFn = Callable[[tf.Tensor], tf.Tensor]

# Images whose gradients one compiled call computes in saliency-like methods (bounds memory).
_GRADIENT_CHUNK = 256


# ----------------------------------------------------------------------------------------
# Argument checks (all raised before any model evaluation that does real work)
# ----------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------
# Compiled evaluation of one model
# ----------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------
# Gradient methods
# ----------------------------------------------------------------------------------------


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


def ig_steps(method: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The path positions and quadrature weights of one integrated-gradients rule.

    Captum's ``approximation_methods`` by name: Riemann sums over ``n_steps`` points (left,
    right, middle) and Gauss-Legendre nodes mapped from [-1, 1] to [0, 1] give Captum's
    weights. ``riemann_trapezoid`` is the exact trapezoid rule on ``n_steps`` points
    including both ends (weights ``1/(n-1)``, halved at the ends, summing to 1), where
    Captum's weights are ``1/n`` (halved at the ends) and sum to ``(n-1)/n``: multiply a
    tfool trapezoid attribution by ``(n_steps - 1) / n_steps`` to get Captum's numbers
    (3.1% apart at 32 steps).

    Args:
        method: One of ``IG_METHODS``.
        n_steps: Number of points (>= 1; >= 2 for ``riemann_trapezoid``).

    Returns:
        ``(alphas, weights)``, float64 arrays of length ``n_steps``; weights sum to 1.

    Raises:
        ValueError: an unknown method or too few steps.
    """
    _check_choice("method", method, IG_METHODS)
    n = _check_int("n_steps", n_steps, 1)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if method == "riemann_trapezoid":
        if n < 2:
            raise ValueError(f"n_steps={n} must be >= 2 for method='riemann_trapezoid'")
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2.0
        return np.linspace(0.0, 1.0, n), weights
    weights = np.full(n, 1.0 / n)
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (np.arange(n) + offset) / n, weights


def integrated_gradients(
    model_fn: ModelFn,
    x: np.ndarray,
    target: int | Sequence[int] | np.ndarray,
    baselines: float | np.ndarray | None = None,
    n_steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    return_convergence_delta: bool = False,
    *,
    from_logits: bool | None = None,
    score: str = "output",
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Integrated gradients (Sundararajan et al. 2017), Captum's names and defaults.

    ``(x - baseline) * sum_i w_i * grad F(baseline + alpha_i (x - baseline))``. The
    ``N * n_steps`` path points are evaluated step-major in compiled chunks of
    ``internal_batch_size`` rows; every image's weighted sum is accumulated in float64
    one step at a time in step order, so the chunking never changes the arithmetic (only
    TensorFlow's kernels may round a row differently in a batch of another size, at the
    1e-7 relative level).

    Args:
        model_fn: The classifier (see ``saliency``).
        x: Inputs ``[N, ...]``.
        target: One class for all images or one per image.
        baselines: ``None`` (zeros), a scalar, one input of shape ``x.shape[1:]`` or one per
            example.
        n_steps: Points on the path (>= 1; >= 2 for the trapezoid rule).
        method: One of ``IG_METHODS``.
        internal_batch_size: Path points per compiled call (``None``: all at once).
        return_convergence_delta: Also return, per example,
            ``sum(attributions) - (F(x) - F(baseline))``.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        score: ``"output"``, ``"probability"`` or ``"loss"`` (see ``saliency``).
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        float32 attributions of ``x``'s shape, and with ``return_convergence_delta`` the
        float64 deltas ``[N]``.

    Raises:
        ValueError: bad ``x``, ``target``, ``baselines``, ``n_steps``, ``method`` or
            ``internal_batch_size``.
    """
    x = _check_x(x)
    alphas, weights = ig_steps(method, n_steps)
    base = _check_baselines(baselines, x)
    rows = len(x) * len(alphas)
    chunk = rows if internal_batch_size is None else None
    if chunk is None:
        chunk = _check_int("internal_batch_size", internal_batch_size, 1)
    compiled = _compiled(model_fn, from_logits, score)
    targets = _check_target(target, x, model_fn)

    n = len(x)
    x_t, base_t = tf.constant(x), tf.constant(base)
    total = np.zeros((n, *x.shape[1:]), np.float64)
    for start in range(0, rows, chunk):
        index = np.arange(start, start + chunk)  # padded to a full chunk: one trace
        index[index >= rows] = 0
        step, image = index // n, index % n
        grads = run_batch(  # the (image, step) rows split across replicas; x, base shared
            compiled.path_gradients,
            (
                x_t,
                base_t,
                tf.constant(image, tf.int32),
                tf.constant(alphas[step], tf.float32),
                tf.constant(targets[image]),
            ),
            strategy,
            replicated=(0, 1),
        )
        used = min(chunk, rows - start)
        # One addition per (image, step), in step order, whatever the chunk boundaries.
        r = 0
        while r < used:
            s = step[r]
            run = min(used - r, n - image[r])
            total[image[r] : image[r] + run] += weights[s] * grads[r : r + run]
            r += run
    attributions = ((x.astype(np.float64) - base) * total).astype(np.float32)
    if not return_convergence_delta:
        return attributions
    ends = run_batch(compiled.scores, (x_t, targets), strategy).astype(np.float64)
    starts = run_batch(compiled.scores, (base_t, targets), strategy).astype(np.float64)
    delta = attributions.reshape(n, -1).sum(axis=1, dtype=np.float64) - (ends - starts)
    return attributions, delta


# ----------------------------------------------------------------------------------------
# Noise tunnel
# ----------------------------------------------------------------------------------------


def noise_tunnel(
    attribution_fn: Callable[..., np.ndarray],
    x: np.ndarray,
    nt_type: str = "smoothgrad",
    nt_samples: int = 5,
    stdevs: float = 1.0,
    seed: int = 0,
    **kwargs: Any,
) -> np.ndarray:
    """SmoothGrad and friends (Smilkov et al. 2017; Captum's ``NoiseTunnel``).

    Calls ``attribution_fn(x=x + noise, **kwargs)`` for ``nt_samples`` Gaussian noise
    draws of standard deviation ``stdevs`` and combines the results: their mean
    (``smoothgrad``), the mean of their squares (``smoothgrad_sq``) or their variance
    (``vargrad``). With ``stdevs=0`` ``smoothgrad`` equals the plain method.

    Args:
        attribution_fn: An attribution function of this module (or any function taking
            ``x=`` and returning an array of its shape), e.g. ``integrated_gradients``.
        x: Inputs ``[N, ...]``.
        nt_type: One of ``NT_TYPES``.
        nt_samples: Noisy copies per input (>= 1).
        stdevs: Standard deviation of the noise, in input units (>= 0). Captum's default 1.0
            is meant for standardised inputs; for pixels in [0, 1] use 0.1 to 0.2.
        seed: Seed of the noise.
        **kwargs: Passed to ``attribution_fn``: ``model_fn``, ``target`` and its options.

    Returns:
        float32 array of ``x``'s shape.

    Raises:
        ValueError: unknown ``nt_type``, ``nt_samples < 1``, negative ``stdevs``, or
            ``return_convergence_delta`` in ``kwargs``.
    """
    x = _check_x(x)
    _check_choice("nt_type", nt_type, NT_TYPES)
    samples = _check_int("nt_samples", nt_samples, 1)
    if not (np.isfinite(stdevs) and stdevs >= 0):
        raise ValueError(f"stdevs={stdevs!r} must be a finite number >= 0")
    if kwargs.get("return_convergence_delta"):
        raise ValueError("return_convergence_delta=True is not supported under noise_tunnel")
    if not callable(attribution_fn):
        raise ValueError(f"attribution_fn={attribution_fn!r} is not callable")
    rng = np.random.default_rng(seed)
    total = np.zeros(x.shape, np.float64)
    total_sq = np.zeros(x.shape, np.float64)
    for _ in range(samples):
        noise = rng.normal(0.0, 1.0, size=x.shape) * float(stdevs)
        attr = np.asarray(attribution_fn(x=(x + noise).astype(np.float32), **kwargs), np.float64)
        if attr.shape != x.shape:
            raise ValueError(f"attribution_fn returned shape {attr.shape}, expected {x.shape}")
        total += attr
        total_sq += attr * attr
    mean, mean_sq = total / samples, total_sq / samples
    if nt_type == "smoothgrad":
        out = mean
    elif nt_type == "smoothgrad_sq":
        out = mean_sq
    else:
        out = np.maximum(mean_sq - mean * mean, 0.0)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------
# Occlusion
# ----------------------------------------------------------------------------------------


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
    total = np.zeros(x.shape, np.float64)
    cover = np.zeros(x.shape[1:], np.int64)
    for rows in batch_slices(len(windows), per_eval):
        group = windows[rows]
        masks = np.zeros((per_eval, *x.shape[1:]), np.float32)  # padded: one trace
        for i, region in enumerate(group):
            masks[(i, *region)] = 1.0
        occluded = run_batch(  # the windows split across replicas; the images shared
            compiled.occluded_scores, (x_t, base_t, masks, targets), strategy, replicated=(0, 1, 3)
        )
        for i, region in enumerate(group):
            diff = (full - occluded[i]).reshape((-1,) + (1,) * (x.ndim - 1))
            total[(slice(None), *region)] += diff
            cover[region] += 1
    out = np.where(cover > 0, total / np.maximum(cover, 1), 0.0)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------
# Salient features (ALGORITHM.md section 4)
# ----------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------
# Every method at once (for the run scripts)
# ----------------------------------------------------------------------------------------


def _default_window(shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A 5 x 5 window with stride 2 over the spatial dims (channels whole for H x W x C)."""
    spatial = shape[:-1] if len(shape) == 3 else shape
    window = tuple(min(5, d) for d in spatial)
    strides = tuple(min(2, d) for d in spatial)
    if len(shape) == 3:
        window, strides = window + (shape[-1],), strides + (shape[-1],)
    return window, strides


def default_options(input_shape: Sequence[int]) -> dict[str, dict[str, Any]]:
    """The settings ``attribute_all`` uses for each method on inputs of ``input_shape``.

    The post's choices: integrated gradients with 200 Gauss-Legendre steps in internal
    batches of 50; the noise tunnel as smoothgrad_sq of integrated gradients (50 steps)
    over 10 samples, with noise of standard deviation 0.15 (15% of a [0, 1] pixel range,
    within Smilkov et al.'s 10-20%); occlusion with a baseline of 0 and, instead of the
    post's 15 x 15 / stride 8 windows meant for 224-pixel images, 5 x 5 windows with
    stride 2 (whole channels), a comparable share of a 28-pixel digit; salient features
    keep the post's 200 elements (all of them for inputs with fewer).
    """
    shape = tuple(int(d) for d in input_shape)
    window, strides = _default_window(shape)
    return {
        "saliency": {"absolute": True},
        "gradient_x_input": {"absolute_gradient": True, "normalize": True},
        "integrated_gradients": {
            "n_steps": 200,
            "method": "gausslegendre",
            "internal_batch_size": 50,
        },
        "noise_tunnel": {
            "attribution": "integrated_gradients",
            "nt_type": "smoothgrad_sq",
            "nt_samples": 10,
            "stdevs": 0.15,
            "seed": 0,
            "n_steps": 50,
            "internal_batch_size": 50,
        },
        "occlusion": {
            "sliding_window_shapes": window,
            "strides": strides,
            "baselines": 0.0,
            "perturbations_per_eval": 16,
        },
        "salient_features": {"num_keep": min(200, int(np.prod(shape)))},
    }


_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "saliency": saliency,
    "gradient_x_input": gradient_x_input,
    "integrated_gradients": integrated_gradients,
    "occlusion": occlusion,
    "salient_features": salient_features,
}
# Arguments attribute_all sets itself, never taken from the per-method options.
_FIXED_ARGS = {
    "model_fn",
    "x",
    "target",
    "from_logits",
    "score",
    "strategy",
    "return_convergence_delta",
}


def _check_options(name: str, fn: Callable, opts: Mapping[str, Any], extra=()) -> None:
    allowed = (set(inspect.signature(fn).parameters) | set(extra)) - _FIXED_ARGS
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(
            f"options for {name!r} have unknown keys {unknown}; allowed: {sorted(allowed)}"
        )


def attribute_all(
    model_fn: ModelFn,
    x: np.ndarray,
    target: int | Sequence[int] | np.ndarray,
    methods: Sequence[str] = DEFAULT_METHODS,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    from_logits: bool | None = None,
    score: str = "output",
    strategy: tf.distribute.Strategy | None = None,
) -> dict[str, np.ndarray]:
    """Computes several attribution methods for one batch, in one call.

    Args:
        model_fn: The classifier (see ``saliency``).
        x: Inputs ``[N, ...]``.
        target: One class for all images or one per image.
        methods: Names from ``ALL_METHODS``, in the order wanted.
        options: Per-method keyword overrides of ``default_options(x.shape[1:])``; for
            ``noise_tunnel``, ``"attribution"`` names the wrapped method and the other
            keys go to the noise tunnel or the wrapped method.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        score: ``"output"``, ``"probability"`` or ``"loss"`` (see ``saliency``;
            ``salient_features`` always uses the probability).
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        ``{method: float32 array of x's shape}`` in the order of ``methods``.

    Raises:
        ValueError: an unknown method or option, or any argument error of the methods.
    """
    x = _check_x(x)
    methods = list(methods)
    if not methods:
        raise ValueError("methods is empty; expected names from " + str(list(ALL_METHODS)))
    for name in methods:
        _check_choice("methods", name, ALL_METHODS)
    options = dict(options or {})
    for name in options:
        _check_choice("options", name, ALL_METHODS)
    settings = default_options(x.shape[1:])
    for name, opts in options.items():
        settings[name] = {**settings[name], **dict(opts)}
    nt_opts = settings["noise_tunnel"]
    inner_name = _check_choice(
        "noise_tunnel attribution",
        nt_opts["attribution"],
        ("saliency", "gradient_x_input", "integrated_gradients", "occlusion"),
    )
    nt_params = set(inspect.signature(noise_tunnel).parameters) - {"attribution_fn", "x", "kwargs"}
    for name in methods:
        if name == "noise_tunnel":
            inner_keys = set(inspect.signature(_FUNCTIONS[inner_name]).parameters)
            _check_options(name, noise_tunnel, nt_opts, {"attribution", *inner_keys})
        else:
            _check_options(name, _FUNCTIONS[name], settings[name])
    common = {"model_fn": model_fn, "target": target, "strategy": strategy}
    results: dict[str, np.ndarray] = {}
    for name in methods:
        if name == "salient_features":
            results[name] = salient_features(
                x=x, from_logits=from_logits, **common, **settings[name]
            )
        elif name == "noise_tunnel":
            opts = {k: v for k, v in nt_opts.items() if k != "attribution"}
            tunnel = {k: opts.pop(k) for k in list(opts) if k in nt_params}
            results[name] = noise_tunnel(
                _FUNCTIONS[inner_name],
                x,
                **tunnel,
                from_logits=from_logits,
                score=score,
                **common,
                **opts,
            )
        else:
            results[name] = _FUNCTIONS[name](
                x=x, from_logits=from_logits, score=score, **common, **settings[name]
            )
    return results


# ----------------------------------------------------------------------------------------
# Attribution over training (the post's "integrated over training")
# ----------------------------------------------------------------------------------------


class TrainingAttribution(keras.callbacks.Callback):
    """Records the input gradients of fixed images while a model trains.

    After every batch or epoch (and once before training) it stores
    ``d score / d x`` of the images under the current weights, and keeps their running
    sum: the post's attribution "integrated over training",
    ``sum_n grad_x J(O(x; theta_n), y)`` (with ``score="loss"``) rather than over a path.

    Attributes:
        frames: The recorded gradients, float32 ``[N, ...]`` each (empty when
            ``keep_frames=False``).
        labels: What each frame follows: ``"start"``, ``"epoch 1"``, ``"epoch 1 batch 3"``.
        integrated: The running sum of every recorded gradient (float64).
        count: Number of recorded gradients.
    """

    def __init__(
        self,
        x: np.ndarray,
        target: int | Sequence[int] | np.ndarray,
        every: str = "epoch",
        score: str = "output",
        from_logits: bool | None = None,
        record_start: bool = True,
        keep_frames: bool = True,
    ):
        """Prepares the recorder (nothing is computed until training starts).

        Args:
            x: The fixed images ``[N, ...]``.
            target: Their classes: one for all or one per image.
            every: ``"batch"`` or ``"epoch"``.
            score: What is differentiated: ``"output"``, ``"probability"`` or ``"loss"``.
            from_logits: Whether the trained model returns logits (``None``: read its graph).
            record_start: Also record the gradients before the first update.
            keep_frames: Keep every frame (needed for the GIF), not only the sum.

        Raises:
            ValueError: bad ``x``, ``target`` shape, ``every`` or ``score``.
        """
        super().__init__()
        self.x = _check_x(x)
        t = np.asarray(target)
        if t.dtype == bool or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"target={target!r} must be an integer class index or one per image")
        if t.ndim not in (0, 1) or (t.ndim == 1 and t.shape != (len(self.x),)):
            raise ValueError(f"target has shape {t.shape}; expected () or ({len(self.x)},)")
        self.target = t
        self.every = _check_choice("every", every, ("batch", "epoch"))
        self.score = _check_choice("score", score, SCORES)
        self.from_logits = from_logits
        self.record_start = bool(record_start)
        self.keep_frames = bool(keep_frames)
        self.frames: list[np.ndarray] = []
        self.labels: list[str] = []
        self.integrated = np.zeros(self.x.shape, np.float64)
        self.count = 0
        self._epoch = 0
        self._targets: np.ndarray | None = None

    def _record(self, label: str) -> None:
        compiled = _compiled(self.model, self.from_logits, self.score)
        if self._targets is None:
            self._targets = _check_target(self.target, self.x, self.model)
        grads = _input_gradients(compiled, self.x, self._targets, None)
        self.integrated += grads
        self.count += 1
        self.labels.append(label)
        if self.keep_frames:
            self.frames.append(grads)

    def on_train_begin(self, logs=None):
        if self.record_start:
            self._record("start")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self.every == "batch":
            self._record(f"epoch {self._epoch} batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        if self.every == "epoch":
            self._record(f"epoch {epoch + 1}")

    def running_sums(self) -> np.ndarray:
        """The integrated gradient after each frame, ``[frames, N, ...]`` (float32)."""
        if not self.frames:
            raise ValueError("no frames recorded (keep_frames=False, or training has not run)")
        return np.cumsum(np.stack(self.frames).astype(np.float64), axis=0).astype(np.float32)

    def write_gif(
        self,
        path: str,
        times_input: bool = False,
        sign: str = "absolute_value",
        outlier_perc: float = 1.0,
        duration_ms: int = 200,
    ):
        """Writes the recorded gradients and their running sum as an animated GIF.

        Each frame shows the images (top row), the gradient recorded then (middle) and the
        integrated gradient so far (bottom), as Captum-style heat maps.

        Args:
            path: Destination ``.gif`` (written atomically through ``tfool.io``).
            times_input: Show gradient x input (the post's view) instead of the gradient.
            sign: ``"all"``, ``"positive"``, ``"negative"`` or ``"absolute_value"``.
            outlier_perc: Percent of the attribution mass clipped as outliers.
            duration_ms: Display time of one frame.

        Returns:
            The written path.

        Raises:
            ValueError: nothing recorded, or a bad ``sign`` / ``duration_ms``.
        """
        from tfool import plots  # lazily: only plots touches matplotlib

        sums = self.running_sums()
        grads = np.stack(self.frames)
        if times_input:
            grads, sums = grads * self.x, sums * self.x
        frames = plots.training_attribution_frames(
            self.x, grads, sums, self.labels, sign=sign, outlier_perc=outlier_perc
        )
        return plots.save_gif(frames, path, duration_ms=duration_ms)


__all__ = [
    "ALL_METHODS",
    "DEFAULT_METHODS",
    "IG_METHODS",
    "NT_TYPES",
    "SCORES",
    "TrainingAttribution",
    "attribute_all",
    "default_options",
    "gradient_x_input",
    "ig_steps",
    "integrated_gradients",
    "noise_tunnel",
    "occlusion",
    "occlusion_windows",
    "saliency",
    "salient_features",
]
