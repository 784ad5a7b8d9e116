"""Integrated gradients (Sundararajan et al. 2017) with Captum's quadrature rules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfool._tf import fold_batches, run_batch
from tfool.attribution._checks import (
    ModelFn,
    _check_baselines,
    _check_choice,
    _check_int,
    _check_target,
    _check_x,
)
from tfool.attribution._compiled import _compiled

#: The integrated-gradients quadrature rules, as Captum names them.
IG_METHODS = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)


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
    path = (x_t, base_t, alphas, weights, targets)
    total = _path_sum(compiled, path, rows, chunk, strategy)
    attributions = ((x.astype(np.float64) - base) * total).astype(np.float32)
    if not return_convergence_delta:
        return attributions
    ends = run_batch(compiled.scores, (x_t, targets), strategy).astype(np.float64)
    starts = run_batch(compiled.scores, (base_t, targets), strategy).astype(np.float64)
    delta = attributions.reshape(n, -1).sum(axis=1, dtype=np.float64) - (ends - starts)
    return attributions, delta


def _path_sum(compiled, path: tuple, rows: int, chunk: int, strategy) -> np.ndarray:
    """``sum_i w_i * grad F(baseline + alpha_i (x - baseline))`` per image, float64: the
    ``rows = N * n_steps`` path points step-major in compiled chunks of ``chunk`` rows."""
    x_t, base_t, alphas, weights, targets = path
    n = int(x_t.shape[0])

    def add_chunk(total: np.ndarray, batch: slice) -> np.ndarray:
        index = np.arange(batch.start, batch.start + chunk)  # padded to a full chunk: one trace
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
        used = batch.stop - batch.start
        # One addition per (image, step), in step order, whatever the chunk boundaries.
        r = 0
        while r < used:
            s = step[r]
            run = min(used - r, n - image[r])
            total[image[r] : image[r] + run] += weights[s] * grads[r : r + run]
            r += run
        return total

    total = np.zeros((n, *x_t.shape[1:]), np.float64)
    return fold_batches(add_chunk, rows, chunk, total)
