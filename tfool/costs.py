"""Backworking costs on flattened activations: reference, batch and misclassification terms.

Distances are mean squared differences, ``d(g, r) = mean_d (g - r)^2``, computed with the
identity ``|g - r|^2 = |g|^2 + |r|^2 - 2 g.r`` (matrix products, reference norms computed
once), so the ``N x B x D`` broadcast tensor of the original program is never built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

#: Distances are floored here so that ``1 / d`` stays finite.
DISTANCE_FLOOR = 1e-8
#: Squared norm given to padding rows of a reference set: they are never the nearest.
PAD_NORM = 1e30
SOFTMAX_COSTS = ("one_minus_p", "cross_entropy")


def flatten(activation: tf.Tensor) -> tf.Tensor:
    """Flattens ``[B, ...]`` to ``[B, D]``."""
    activation = tf.convert_to_tensor(activation)
    return tf.reshape(activation, [tf.shape(activation)[0], -1])


def squared_norms(ref: tf.Tensor) -> tf.Tensor:
    """Squared L2 norms (float32) of the rows (last axis) of ``ref``; precompute them once."""
    ref = tf.cast(tf.convert_to_tensor(ref), tf.float32)
    return tf.reduce_sum(tf.square(ref), axis=-1)


def nearest_distance(
    gen: tf.Tensor,
    ref: tf.Tensor | Sequence[tf.Tensor],
    ref_sq_norms: tf.Tensor | Sequence[tf.Tensor] | None = None,
    chunk_size: int | None = None,
    transposed: bool = False,
) -> tf.Tensor:
    """For every generated row, the mean squared distance to its nearest reference row.

    Works on one group (``gen [B, D]``, ``ref [N, D]``), on a stack of groups (``gen
    [L, B, D]``, ``ref [L, N, D]``, padding rows carrying ``PAD_NORM`` in
    ``ref_sq_norms``) or on groups with reference sets of their own sizes (``gen [L, B, D]``
    and a sequence of ``L`` tensors ``[N_l, D]``: nothing is padded). References may be
    stored in a narrower float type (float16, bfloat16); the distances are computed in
    float32. With ``transposed`` the reference sets are stored ``[D, N]`` (``[L, D, N]``):
    the layout whose product with the generated rows runs fastest on CPU.

    The gradient is the exact one of the nearest distance, ``2 (g - r_nearest) / D``: only
    the nearest reference rows are read again (a gather), not the whole set.

    Args:
        gen: Generated activations, flattened.
        ref: Reference activations, flattened.
        ref_sq_norms: ``squared_norms(ref)``, precomputed (computed here when ``None``).
        chunk_size: Reference rows per chunk (``None``: all at once); the result is the same.
        transposed: Whether ``ref`` is stored ``[..., D, N]`` rather than ``[..., N, D]``.

    Returns:
        ``[B]`` (or ``[L, B]``) distances, floored at ``DISTANCE_FLOOR``.
    """
    gen = tf.convert_to_tensor(gen, tf.float32)
    if isinstance(ref, (list, tuple)):
        norms = ref_sq_norms if ref_sq_norms is not None else [None] * len(ref)
        return _per_group(
            lambda g, r, n: _nearest(g, r, n, chunk_size, transposed), gen, ref, norms
        )
    return _nearest(gen, ref, ref_sq_norms, chunk_size, transposed)


def _per_group(fn, gen: tf.Tensor, sets: Sequence, *per_set: Sequence) -> tf.Tensor:
    """``fn(gen[i], sets[i], *others[i])`` for every group ``i``, stacked."""
    if len(sets) != gen.shape[0]:
        raise ValueError(f"{len(sets)} reference sets for {gen.shape[0]} groups of rows")
    return tf.stack([fn(gen[i], *args) for i, args in enumerate(zip(sets, *per_set))])


def _nearest(gen, ref, ref_sq_norms, chunk_size, transposed=False):
    """``nearest_distance`` of one group or one padded stack of groups."""
    ref = tf.convert_to_tensor(ref)
    if not ref.dtype.is_floating:
        ref = tf.cast(ref, tf.float32)
    if ref_sq_norms is None:
        ref_sq_norms = squared_norms(tf.linalg.matrix_transpose(ref) if transposed else ref)
    ref_sq_norms = tf.convert_to_tensor(ref_sq_norms, tf.float32)
    dim = tf.cast(tf.shape(gen)[-1], tf.float32)
    row_axis = -1 if transposed else -2
    n = ref.shape[row_axis]
    chunked = bool(chunk_size) and (n is None or int(chunk_size) < n)
    step = int(chunk_size) if chunked else n
    batch_dims = ref.shape.rank - 2

    @tf.custom_gradient
    def distance(g):
        g_sq = tf.reduce_sum(tf.square(g), axis=-1)[..., :, None]  # [.., B, 1]

        def nearest_in(start, size):
            if not chunked:
                r, norms = ref, ref_sq_norms
            elif transposed:
                r, norms = ref[..., start : start + size], ref_sq_norms[..., start : start + size]
            else:
                r = ref[..., start : start + size, :]
                norms = ref_sq_norms[..., start : start + size]
            r = tf.cast(r, tf.float32)
            dots = tf.linalg.matmul(g, r, transpose_b=not transposed)  # [.., B, n]
            d = g_sq + norms[..., None, :] - 2.0 * dots
            return tf.reduce_min(d, axis=-1), tf.argmin(d, axis=-1, output_type=tf.int32) + start

        def closer(best, index, low, arg):
            nearer = low < best
            return tf.where(nearer, low, best), tf.where(nearer, arg, index)

        if not chunked:
            best, index = nearest_in(0, n)
        elif n is not None:  # known size: the chunks unrolled
            best, index = nearest_in(0, step)
            for start in range(step, n, step):
                best, index = closer(best, index, *nearest_in(start, step))
        else:  # a size known only when run: a loop over the chunks
            total = tf.shape(ref)[row_axis]
            best, index = nearest_in(0, step)

            def body(start, best, index):
                return (start + step, *closer(best, index, *nearest_in(start, step)))

            _, best, index = tf.while_loop(
                lambda start, *_: start < total, body, (tf.constant(step), best, index)
            )
        dist = best / dim

        def grad(upstream):
            if transposed:  # [.., D, B] columns, back to rows
                nearest = tf.gather(ref, index, axis=-1, batch_dims=batch_dims)
                nearest = tf.linalg.matrix_transpose(nearest)
            else:
                nearest = tf.gather(ref, index, axis=-2, batch_dims=batch_dims)
            nearest = tf.cast(nearest, tf.float32)
            live = tf.cast(dist > DISTANCE_FLOOR, tf.float32) * upstream
            return live[..., None] * (2.0 / dim) * (g - nearest)

        return tf.maximum(dist, DISTANCE_FLOOR), grad

    return distance(gen)


def nearest_unit_distance(gen: tf.Tensor, sorted_ref: tf.Tensor | Sequence[tf.Tensor]) -> tf.Tensor:
    """For every generated row, the mean over units of the squared distance from each unit's
    value to the nearest value that unit takes in the reference set.

    The original program's ``fc`` term: ``min_n (g[b, d] - r[n, d])^2`` taken per unit ``d``
    (the nearest reference may differ from unit to unit), then averaged over the units.
    The reference values of every unit are stored sorted (``sort_units``), so the nearest
    one is found by binary search: no ``N x B x D`` tensor, no product with the set.

    Args:
        gen: ``[B, D]`` generated rows, or ``[L, B, D]`` with one set per group.
        sorted_ref: ``[D, N]`` reference values sorted along ``N`` (``sort_units``), or a
            sequence of ``L`` such tensors.

    Returns:
        ``[B]`` (or ``[L, B]``) mean per-unit distances, floored at ``DISTANCE_FLOOR``.
    """
    gen = tf.convert_to_tensor(gen, tf.float32)
    if isinstance(sorted_ref, (list, tuple)):
        return _per_group(nearest_unit_distance, gen, sorted_ref)
    ref = tf.cast(tf.convert_to_tensor(sorted_ref), tf.float32)  # [D, N]
    values = tf.transpose(gen)  # [D, B]
    last = tf.shape(ref, out_type=tf.int32)[-1] - 1
    upper = tf.searchsorted(ref, values, side="left", out_type=tf.int32)
    above = tf.gather(ref, tf.minimum(upper, last), batch_dims=1)
    below = tf.gather(ref, tf.maximum(upper - 1, 0), batch_dims=1)
    d = tf.minimum(tf.square(values - above), tf.square(values - below))  # [D, B]
    return tf.maximum(tf.reduce_mean(d, axis=0), DISTANCE_FLOOR)


def sort_units(ref_columns: tf.Tensor) -> tf.Tensor:
    """``[D, N]`` reference values (one column per image) sorted along ``N`` for each unit."""
    return tf.sort(tf.convert_to_tensor(ref_columns), axis=-1)


def reference_cost(
    gen: tf.Tensor,
    ref: tf.Tensor | Sequence[tf.Tensor],
    ref_sq_norms: tf.Tensor | Sequence[tf.Tensor] | None = None,
    chunk_size: int | None = None,
    transposed: bool = False,
    per_unit: bool = False,
) -> tf.Tensor:
    """``1 / mean_b min_n d(b, n)``: large when the batch is close to the reference set.

    With ``per_unit`` the minimum is taken per unit instead (``nearest_unit_distance``, the
    original program's ``fc`` term) and ``ref`` holds sorted ``[D, N]`` values.

    Args:
        gen: ``[B, D]`` (or ``[L, B, D]``) generated activations.
        ref: ``[N, D]`` (or ``[L, N, D]``, or ``L`` tensors ``[N_l, D]``) reference
            activations.
        ref_sq_norms: Precomputed ``squared_norms(ref)``.
        chunk_size: Reference rows per chunk.
        transposed: The references are stored ``[D, N]`` (see ``nearest_distance``).
        per_unit: Take the minimum per unit (``ref`` sorted by ``sort_units``).

    Returns:
        A scalar (or ``[L]``, one per group).
    """
    if per_unit:
        d = nearest_unit_distance(gen, ref)
    else:
        d = nearest_distance(gen, ref, ref_sq_norms, chunk_size, transposed)
    return 1.0 / tf.maximum(tf.reduce_mean(d, axis=-1), DISTANCE_FLOOR)


def pairwise_distances(gen: tf.Tensor) -> tf.Tensor:
    """``[.., B, B]`` mean squared distances between the rows of ``gen [.., B, D]``."""
    gen = tf.convert_to_tensor(gen, tf.float32)
    dim = tf.cast(tf.shape(gen)[-1], tf.float32)
    sq = tf.reduce_sum(tf.square(gen), axis=-1)
    dots = tf.linalg.matmul(gen, gen, transpose_b=True)
    d = sq[..., :, None] + sq[..., None, :] - 2.0 * dots
    return tf.maximum(d, 0.0) / dim


def batch_cost(gen: tf.Tensor, self_pairs: bool = False) -> tf.Tensor:
    """``1 / mean_{b != b'} d(b, b')``: large when the batch's rows look alike.

    Self-pairs are excluded (a deliberate change: the original averaged them in, which
    multiplies the cost by exactly ``B / (B - 1)``; ``self_pairs=True`` restores that).

    Args:
        gen: ``[B, D]`` (or ``[L, B, D]``) generated activations, ``B >= 2``.
        self_pairs: Average over all ``B x B`` pairs, each row's zero distance to itself
            included, as the original program did.

    Returns:
        A scalar (or ``[L]``).
    """
    gen = tf.convert_to_tensor(gen, tf.float32)
    b = gen.shape[-2]
    if b is not None and b < 2:
        raise ValueError(f"batch_cost needs at least 2 rows per group, got {b}")
    d = pairwise_distances(gen)
    off_diag = 1.0 - tf.eye(tf.shape(gen)[-2], dtype=d.dtype)
    pairs = tf.cast(tf.size(off_diag), d.dtype) if self_pairs else tf.reduce_sum(off_diag)
    mean = tf.reduce_sum(d * off_diag, axis=[-2, -1]) / pairs
    return 1.0 / tf.maximum(mean, DISTANCE_FLOOR)


def misclassification_cost(
    probs: tf.Tensor, labels: tf.Tensor, kind: str = "one_minus_p"
) -> tf.Tensor:
    """The softmax term: ``mean_b (1 - p[b, l])`` or the mean cross-entropy ``-log p[b, l]``.

    Args:
        probs: ``[B, C]`` (or ``[L, B, C]``) class probabilities.
        labels: ``[B]`` (or ``[L, B]``) target labels, or one per group ``[L]`` with 3-D probs.
        kind: ``one_minus_p`` (the MNIST post) or ``cross_entropy`` (the rubbish-image post).

    Returns:
        A scalar (or ``[L]``).
    """
    if kind not in SOFTMAX_COSTS:
        raise ValueError(f"kind={kind!r} is not one of {SOFTMAX_COSTS}")
    probs = tf.convert_to_tensor(probs, tf.float32)
    labels = tf.convert_to_tensor(labels)
    if probs.shape.rank == 3 and labels.shape.rank == 1:
        labels = tf.repeat(labels[:, None], tf.shape(probs)[1], axis=1)
    p = tf.gather(probs, tf.cast(labels, tf.int32), axis=-1, batch_dims=labels.shape.rank)
    if kind == "one_minus_p":
        return tf.reduce_mean(1.0 - p, axis=-1)
    return tf.reduce_mean(-tf.math.log(tf.maximum(p, 1e-30)), axis=-1)


def default_layer_cost_coeffs(num_layers: int) -> tuple[float, ...]:
    """The post's weights: ``logspace(-L, -1, L)`` with the last (softmax) entry times 100.

    For the five layers of the reference CNN: ``(1e-5, 1e-4, 1e-3, 1e-2, 10)``.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers={num_layers} must be >= 1")
    coeffs = np.logspace(-num_layers, -1, num_layers)
    coeffs[-1] *= 100.0
    return tuple(float(c) for c in coeffs)


@dataclasses.dataclass(frozen=True)
class CostContext:
    """What the cost terms of one evaluation share besides the activations.

    Attributes:
        references: Per non-softmax layer, the reference activations (see ``total_cost``).
        reference_sq_norms: Their squared row norms.
        labels: ``[L]`` target label of each group.
        softmax_cost: ``one_minus_p`` or ``cross_entropy``.
        chunk_size: Reference rows per chunk.
        transposed: The references are stored ``[D, N]``.
        per_unit: Per non-softmax layer, whether its reference term takes the minimum per
            unit; empty: per example everywhere.
        self_pairs: Include the self-pairs in the batch terms.
    """

    references: Sequence
    reference_sq_norms: Sequence
    labels: tf.Tensor
    softmax_cost: str = "one_minus_p"
    chunk_size: int | None = None
    transposed: bool = False
    per_unit: Sequence[bool] = ()
    self_pairs: bool = False


def _reference_term(g: tf.Tensor, ctx: CostContext, i: int) -> tf.Tensor:
    unit = bool(ctx.per_unit[i]) if ctx.per_unit else False
    return reference_cost(
        g,
        ctx.references[i],
        ctx.reference_sq_norms[i],
        ctx.chunk_size,
        ctx.transposed,
        per_unit=unit,
    )


def _batch_term(g: tf.Tensor, ctx: CostContext, i: int) -> tf.Tensor:
    return batch_cost(g, ctx.self_pairs)


def _softmax_term(probs: tf.Tensor, ctx: CostContext) -> tf.Tensor:
    return misclassification_cost(probs, ctx.labels, ctx.softmax_cost)


@dataclasses.dataclass(frozen=True)
class CostTerm:
    """One term of the backworking cost.

    Attributes:
        name: Its key in the terms of ``total_cost`` (and of results, events and
            TensorBoard).
        compute: ``(g [L, B, D], ctx, layer) -> [L]`` for a per-layer term, ``(probs [L, B,
            C], ctx) -> [L]`` for a term of the class probabilities.
        coefficient: The ``BackworkConfig`` field that weighs it (``None``: only the layer
            weight).
        per_layer: Computed at every exposed layer but the probabilities (weighted by the
            layer's weight, its values ``[layers-1, L]``), or once on the probabilities
            (weighted by the last layer weight, its values ``[L]``).
        skip_at_zero: With a zero coefficient the term is not computed (its values are
            zeros); otherwise it is computed and reported whatever its weight.
    """

    name: str
    compute: Callable
    coefficient: str | None = None
    per_layer: bool = True
    skip_at_zero: bool = False


#: Every cost term, in the order the cost sums them (per layer first, in this order).
COST_TERMS = (
    CostTerm("reference", _reference_term, "reference_cost_coeff"),
    CostTerm("batch", _batch_term, "batch_cost_coeff", skip_at_zero=True),
    CostTerm("softmax", _softmax_term, per_layer=False),
)


def coefficient_names() -> tuple[str, ...]:
    """The config fields that weigh cost terms, in ``COST_TERMS`` order."""
    return tuple(t.coefficient for t in COST_TERMS if t.coefficient)


def term_weights(config: Any) -> dict[str, float]:
    """``{coefficient: value}`` of every cost term's coefficient, read from ``config``."""
    return {name: getattr(config, name) for name in coefficient_names()}


def total_cost(
    activations: Mapping[str, tf.Tensor] | Sequence[tf.Tensor],
    references: Sequence[tf.Tensor],
    reference_sq_norms: Sequence[tf.Tensor],
    labels: tf.Tensor,
    layer_cost_coeffs: Sequence[float],
    reference_cost_coeff: float = 0.5,
    batch_cost_coeff: float = 0.5,
    softmax_cost: str = "one_minus_p",
    chunk_size: int | None = None,
    transposed: bool = False,
    per_unit: Sequence[bool] = (),
    self_pairs: bool = False,
    weights: Mapping[str, float] | None = None,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The weighted backworking cost of groups of rows, one group per target label.

    ``cost_l = sum_i c[i] * (rc * reference_cost_i + bc * batch_cost_i) + c[-1] * softmax_cost``
    (the terms of ``COST_TERMS``).

    Args:
        activations: Per exposed layer, ``[L, B, ...]`` activations; the last entry is the
            class probabilities ``[L, B, C]``.
        references: Per non-softmax layer, ``[L, N, D]`` flattened reference activations
            (padded), or ``L`` tensors ``[N_l, D]``.
        reference_sq_norms: Their squared row norms ``[L, N]`` (padding rows: ``PAD_NORM``),
            or ``L`` tensors ``[N_l]``.
        labels: ``[L]`` target label of each group.
        layer_cost_coeffs: One weight per exposed layer, softmax last.
        reference_cost_coeff: Weight of the reference terms.
        batch_cost_coeff: Weight of the batch terms (0 skips them).
        softmax_cost: ``one_minus_p`` or ``cross_entropy``.
        chunk_size: Reference rows per chunk.
        transposed: The references are stored ``[D, N]`` (see ``nearest_distance``).
        per_unit: Per non-softmax layer, whether its reference term takes the minimum per
            unit (its references sorted by ``sort_units``); empty: per example everywhere.
        self_pairs: Include the self-pairs in the batch terms (the original program).
        weights: Coefficients by name (``term_weights(config)``), over the two above.

    Returns:
        ``(cost [L], terms)`` with one entry per term of ``COST_TERMS``:
        ``terms['reference'] [layers-1, L]``, ``terms['batch'] [layers-1, L]`` and
        ``terms['softmax'] [L]``.
    """
    acts = list(activations.values()) if isinstance(activations, Mapping) else list(activations)
    if len(layer_cost_coeffs) != len(acts):
        raise ValueError(
            f"layer_cost_coeffs has {len(layer_cost_coeffs)} entries but there are "
            f"{len(acts)} exposed layers"
        )
    weights = {
        "reference_cost_coeff": reference_cost_coeff,
        "batch_cost_coeff": batch_cost_coeff,
        **(weights or {}),
    }
    ctx = CostContext(
        references,
        reference_sq_norms,
        labels,
        softmax_cost,
        chunk_size,
        transposed,
        per_unit,
        self_pairs,
    )
    return _weighted_sum(acts, ctx, layer_cost_coeffs, weights)


def _weighted_sum(acts, ctx: CostContext, layer_cost_coeffs, weights):
    """The cost and terms of ``total_cost``, summed in ``COST_TERMS`` order."""
    per_layer = [t for t in COST_TERMS if t.per_layer]
    values: dict[str, list] = {t.name: [] for t in per_layer}
    cost = 0.0
    for i, act in enumerate(acts[:-1]):
        shape = tf.shape(act)
        g = tf.reshape(act, [shape[0], shape[1], -1])
        layer = None
        for term in per_layer:
            weight = weights[term.coefficient]
            if term.skip_at_zero and weight == 0.0:
                values[term.name].append(tf.zeros_like(values[per_layer[0].name][-1]))
                continue
            value = term.compute(g, ctx, i)
            values[term.name].append(value)
            layer = weight * value if layer is None else layer + weight * value
        cost = cost + layer_cost_coeffs[i] * layer
    terms = {}
    for term in COST_TERMS:
        if term.per_layer:
            continue
        value = term.compute(acts[-1], ctx)
        weighted = value if term.coefficient is None else weights[term.coefficient] * value
        cost = cost + layer_cost_coeffs[-1] * weighted
        terms[term.name] = value
    num_groups = tf.shape(next(iter(terms.values())))[0]
    for name, vals in values.items():
        terms[name] = tf.stack(vals) if vals else tf.zeros([0, num_groups])
    return cost, {t.name: terms[t.name] for t in COST_TERMS}
