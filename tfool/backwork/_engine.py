"""The compiled part of backworking: the cost and gradient step, TF1's Adam, the engine
that holds the optimised images."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfool import _tf, costs
from tfool.backwork._config import BackworkConfig
from tfool.backwork._prepared import Prepared, initial_batch, prepare
from tfool.references import ReferenceSet

_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8  # TF1 AdamOptimizer, as in the original


def adam_step(x, m, v, t, grad, learning_rate: float):
    """One step of TF1's ``AdamOptimizer`` (the original program's optimiser).

    ``m' = b1 m + (1 - b1) g``, ``v' = b2 v + (1 - b2) g^2``,
    ``x' = x - lr sqrt(1 - b2^t) / (1 - b1^t) * m' / (sqrt(v') + eps)``, with ``b1 = 0.9``,
    ``b2 = 0.999``, ``eps = 1e-8`` outside the square root.

    Args:
        x, m, v: The values and Adam's moments.
        t: The step count, this step included (``>= 1``), broadcastable to ``x``.
        grad: The gradient at ``x``.
        learning_rate: Adam's learning rate.

    Returns:
        ``(x', m', v')``.
    """
    m_new = _BETA1 * m + (1.0 - _BETA1) * grad
    v_new = _BETA2 * v + (1.0 - _BETA2) * tf.square(grad)
    lr_t = learning_rate * tf.sqrt(1.0 - tf.pow(_BETA2, t)) / (1.0 - tf.pow(_BETA1, t))
    return x - lr_t * m_new / (tf.sqrt(v_new) + _ADAM_EPS), m_new, v_new


def _reinitialise(
    x, m, v, t, rows_mask, label_of_row, rngs, image_shape, config, reset_adam=True
) -> None:
    """Fresh uniform noise for the masked rows, whose Adam moments and step count restart
    when ``reset_adam`` (the original program kept them).

    Host-side assignments: under a strategy they reach every replica's copy.
    """
    values = x.numpy()
    for li in np.unique(label_of_row[rows_mask]):
        rows = np.flatnonzero(rows_mask & (label_of_row == li))
        noise = rngs[li].uniform(config.input_min, config.input_max, size=(len(rows), *image_shape))
        values[rows] = noise.astype(np.float32)
    rows_mask = np.concatenate([rows_mask, np.zeros(x.shape[0] - len(rows_mask), bool)])
    mask = rows_mask.reshape(-1, *([1] * len(image_shape)))
    x.assign(values)
    if not reset_adam:
        return
    m.assign(np.where(mask, 0.0, m.numpy()).astype(np.float32))
    v.assign(np.where(mask, 0.0, v.numpy()).astype(np.float32))
    t.assign(np.where(rows_mask, 0.0, t.numpy()).astype(np.float32))


class _Engine:
    """The compiled part of backworking: cost, gradient and the per-row Adam update.

    One compute function for one or several replicas: a step over groups of rows, one
    group per label, run through ``tfool._tf.SplitBatch`` (a pass-through on one device).
    On one device only the running labels are computed, in buckets of a power-of-two
    count, each label's reference set passed whole (never padded or copied). Under several
    replicas every label is computed and the groups are split across the replicas: each
    replica holds only its labels' reference activations (sharded once, so memory per
    device shrinks with the replica count). The batch cost pairs rows of the same label
    only, so every row a group needs lives on its replica; the gradients, probabilities
    and cost terms are gathered in row order, so every worker holds the whole batch's
    values, the host takes each convergence and re-initialisation decision once, and the
    identical Adam update is applied to every copy of the mirrored inputs.
    """

    def __init__(self, act, names, coeffs, config, references, labels, per, init, strategy):
        self.config, self.per, self.strategy = config, per, strategy
        self.num_labels = len(labels)
        self.replicas = strategy.num_replicas_in_sync
        self.image_shape = tuple(init.shape[1:])
        self.rows = len(init)
        with strategy.scope():
            self.x = tf.Variable(init, name="backwork_inputs")
            self.m = tf.Variable(tf.zeros_like(init), name="adam_m")
            self.v = tf.Variable(tf.zeros_like(init), name="adam_v")
            self.t = tf.Variable(tf.zeros([self.rows], tf.float32), name="adam_t")
        self._cost_of = _cost_function(act, names, coeffs, config, references, per)
        self._refs = references
        self._labels = np.asarray(labels[: self.num_labels])
        self._steps: dict[int, Any] = {}  # bucket -> compiled step
        self.traces = 0  # compiled steps made (one per bucket of running labels)
        self._computed = np.arange(self.rows)  # rows the last gradient covers
        self._last: tuple | None = None  # the last cost, terms and probabilities, all labels
        self._split = strategy if self.replicas > 1 else None
        self._sharded = (
            _shard_references(strategy, references, self.replicas) if self._split else None
        )
        self._apply_rows = tf.function(
            self._adam_rows,
            jit_compile=config.jit_compile,
            input_signature=[
                tf.TensorSpec([None, *self.image_shape], tf.float32),
                tf.TensorSpec([None], tf.int32),
            ],
        )
        self._apply = tf.function(self._adam, reduce_retracing=True)

    def _columns(self, k: int) -> bool:
        """Whether layer ``k``'s references are stored one image per column ``[D, N]``."""
        return self._refs.transposed or self._refs.is_per_unit(k)

    def _bucket(self, running: int) -> int:
        """The compiled size for ``running`` labels: the next power of two, or all labels."""
        size = 1
        while size < running:
            size *= 2
        return min(size, self.num_labels)

    def _step_for(self, bucket: int):
        """The compiled step over ``bucket`` groups of rows (made once; on one device the
        shapes of the reference sets are left open, so any labels of that count reuse it)."""
        if bucket in self._steps:
            return self._steps[bucket]
        # several replicas: padded ``[groups, N_max, D]`` rows (``_shard_references``)
        per, cost_of = self.per, self._cost_of
        transposed = self._refs.transposed and not self._split

        # The reference tensors are arguments, never copied nor captured: TensorFlow keeps
        # a traced function's captures alive after the function is gone, which held every
        # run's reference set (GBs on full MNIST) until the process ended.
        def step(rows, refs_r, norms_r, labels_r, weights_r):
            groups = rows.shape[0] if rows.shape[0] is not None else tf.shape(rows)[0]
            images = tf.gather(self.x, tf.reshape(rows, [-1]))
            with tf.GradientTape() as tape:
                tape.watch(images)
                cost, terms, probs, total = cost_of(
                    images, refs_r, norms_r, labels_r, weights_r, groups, transposed
                )
            terms = {k: tf.transpose(v) if v.shape.rank == 2 else v for k, v in terms.items()}
            grad = tf.reshape(tape.gradient(total, images), [groups, per, *self.image_shape])
            return grad, cost, terms, probs

        if self._split:
            compiled = tf.function(step, reduce_retracing=True)
        else:
            compiled = tf.function(
                step, jit_compile=self.config.jit_compile, input_signature=self._signature(bucket)
            )
        self._steps[bucket] = compiled
        self.traces += 1
        return compiled

    def _signature(self, bucket: int) -> list:
        """The input signature of the one-device step over ``bucket`` labels."""
        refs = self._refs
        ref_specs = []
        for k, layer in enumerate(refs.activations):
            dim = int(layer[0].shape[0] if self._columns(k) else layer[0].shape[1])
            shape = [dim, None] if self._columns(k) else [None, dim]
            ref_specs.append([tf.TensorSpec(shape, layer[0].dtype)] * bucket)
        norm_specs = [[tf.TensorSpec([None], tf.float32)] * bucket for _ in refs.sq_norms]
        return [
            tf.TensorSpec([bucket, self.per], tf.int32),
            ref_specs,
            norm_specs,
            tf.TensorSpec([bucket], tf.int64),
            tf.TensorSpec([bucket], tf.float32),
        ]

    def _groups(self, active: np.ndarray):
        """The labels to compute: on one device the running ones, their bucket filled with
        weightless groups that read one reference image each; under several replicas all
        of them. Returns ``(running, groups, weights, references, norms)``."""
        running = np.flatnonzero(active)
        if self._split:
            running = np.arange(self.num_labels)
            weights = np.ones(self.num_labels, np.float32)
            return running, running, weights, *self._sharded
        if not len(running):
            running = np.arange(self.num_labels)[:1]
        pad = self._bucket(len(running)) - len(running)
        fill = running[0]
        acts = []
        for k, layer in enumerate(self._refs.activations):
            small = layer[fill][:, :1] if self._columns(k) else layer[fill][:1]
            acts.append([layer[i] for i in running] + [small] * pad)
        norms = [[n[i] for i in running] + [n[fill][:1]] * pad for n in self._refs.sq_norms]
        groups = np.concatenate([running, np.full(pad, fill)])
        weights = np.concatenate([np.ones(len(running)), np.zeros(pad)]).astype(np.float32)
        return running, groups, weights, acts, norms

    def _compute_running(self, active: np.ndarray):
        """Cost, terms, probabilities and gradient of the labels ``_groups`` picks."""
        running, groups, weights, acts, norms = self._groups(active)
        rows = (groups[:, None] * self.per + np.arange(self.per)).astype(np.int32)
        batch = _tf.SplitBatch(self._split, len(groups))
        split = batch.split(rows, self._labels[groups].astype(np.int64), weights)
        step = self._step_for(len(groups))
        grad, cost, terms, probs = batch.gather(batch.run(step, split[0], acts, norms, *split[1:]))
        n = len(running)
        self._computed = rows[:n].reshape(-1)
        terms = {k: v.T if v.ndim == 2 else v for k, v in terms.items()}
        grad = grad[:n].reshape(-1, *self.image_shape)
        return grad, running, cost[:n], terms, probs[:n]

    def _merge(self, running, cost, terms, probs):
        """The latest values of every label: the running ones just computed, the frozen
        ones as they were when they stopped (their images have not changed since)."""
        n = len(running)
        if self._last is None:
            self._last = (
                np.zeros(self.num_labels, np.float32),
                {
                    k: np.zeros((v.shape[0], self.num_labels), np.float32)
                    if v.ndim == 2
                    else np.zeros(self.num_labels, np.float32)
                    for k, v in terms.items()
                },
                np.zeros((self.num_labels, *probs.shape[1:]), np.float32),
            )
        last_cost, last_terms, last_probs = self._last
        last_cost = last_cost.copy()
        last_probs = last_probs.copy()
        last_terms = {k: v.copy() for k, v in last_terms.items()}
        last_cost[running] = cost
        last_probs[running] = probs
        for k, val in terms.items():
            if val.ndim == 2:
                last_terms[k][:, running] = val[:, :n]
            else:
                last_terms[k][running] = val[:n]
        self._last = (last_cost, last_terms, last_probs)
        return last_cost, last_terms, last_probs

    def _adam(self, grad, row_mask):
        x, m, v, t = self.x, self.m, self.v, self.t
        mask_rows = tf.reshape(row_mask, [-1] + [1] * len(self.image_shape))
        t_new = t + row_mask
        tb = tf.reshape(tf.maximum(t_new, 1.0), tf.shape(mask_rows))
        x_new, m_new, v_new = adam_step(x, m, v, tb, grad, self.config.learning_rate)
        if self.config.clip_inputs:
            x_new = tf.clip_by_value(x_new, self.config.input_min, self.config.input_max)
        keep = mask_rows > 0
        x.assign(tf.where(keep, x_new, x))
        m.assign(tf.where(keep, m_new, m))
        v.assign(tf.where(keep, v_new, v))
        t.assign(t_new)

    def compute(self, active: np.ndarray | None = None):
        """Cost terms, probabilities and the gradient (NumPy, real labels only).

        On one device only the ``active`` labels (all when ``None``) are computed: their
        rows through the model, their reference sets read; the others keep the values
        they had when they stopped. Under several replicas every label is computed.
        """
        if active is None:
            active = np.ones(self.num_labels, bool)
        grad, running, cost, terms, probs = self._compute_running(np.asarray(active))
        cost, terms, probs = self._merge(running, cost, terms, probs)
        return grad, cost, terms, probs

    def images(self) -> np.ndarray:
        """The current images of the real rows."""
        return self.x.numpy()[: self.num_labels * self.per]

    def apply(self, grad, row_mask: np.ndarray) -> None:
        """One Adam step on the rows of ``row_mask`` that the last ``compute`` covered."""
        if self._split is None:
            chosen = np.flatnonzero(np.asarray(row_mask)[self._computed])
            if len(chosen):
                rows = self._computed[chosen]
                self._apply_rows(tf.gather(grad, chosen), tf.constant(rows, tf.int32))
            return
        self._apply(tf.constant(grad), tf.constant(np.asarray(row_mask, np.float32)))

    def _adam_rows(self, grad, rows):
        """Adam on the given rows only: gathered, stepped, scattered back."""
        idx = rows[:, None]
        t_new = tf.gather(self.t, rows) + 1.0
        tb = tf.reshape(t_new, [-1] + [1] * len(self.image_shape))
        x_new, m_new, v_new = adam_step(
            tf.gather(self.x, rows),
            tf.gather(self.m, rows),
            tf.gather(self.v, rows),
            tb,
            grad,
            self.config.learning_rate,
        )
        if self.config.clip_inputs:
            x_new = tf.clip_by_value(x_new, self.config.input_min, self.config.input_max)
        self.x.scatter_nd_update(idx, x_new)
        self.m.scatter_nd_update(idx, m_new)
        self.v.scatter_nd_update(idx, v_new)
        self.t.scatter_nd_update(idx, t_new)

    def reinitialise(self, rows_mask, label_of_row, rngs, reset_adam: bool = True) -> None:
        """Fresh noise for the masked real rows; fresh Adam state too when ``reset_adam``."""
        _reinitialise(
            self.x,
            self.m,
            self.v,
            self.t,
            rows_mask,
            label_of_row,
            rngs,
            self.image_shape,
            self.config,
            reset_adam,
        )


def _cost_function(act, names, coeffs, config, references, per):
    """``cost_of(images, refs, norms, labels, weights, groups, transposed)``: the cost,
    terms and probabilities of ``groups`` groups of ``per`` rows, and the weighted total
    whose gradient the step takes (every term of ``costs.COST_TERMS``, weighted by the
    config's coefficients)."""
    weights = costs.term_weights(config)
    self_pairs = config.semantics == "original"

    def cost_of(images, refs_r, norms_r, labels_r, weights_r, groups, transposed=False):
        out = act(images, training=False)
        grouped = [tf.reshape(out[n], (groups, per, *out[n].shape[1:])) for n in names]
        cost, terms = costs.total_cost(
            grouped,
            refs_r,
            norms_r,
            labels_r,
            coeffs,
            softmax_cost=config.softmax_cost,
            chunk_size=config.chunk_size,
            transposed=transposed,
            per_unit=references.per_unit,
            self_pairs=self_pairs,
            weights=weights,
        )
        return cost, terms, grouped[-1], tf.reduce_sum(cost * weights_r)

    return cost_of


def _shard_references(strategy, references: ReferenceSet, replicas: int) -> tuple[list, list]:
    """Every layer's reference rows split across the replicas as ``SplitBatch`` splits the
    label groups: replica ``r`` holds groups ``[r g, (r + 1) g)`` (the last repeated),
    padded ``[g, N_max, D]``, with their squared norms."""
    num_labels = len(references.labels)
    groups, last = -(-num_labels // replicas), num_labels - 1
    acts, norms = [], []
    for k in range(len(references.layer_names)):
        stacks = [
            references.padded(k, [min(r * groups + j, last) for j in range(groups)])
            for r in range(replicas)
        ]
        for out, part in ((acts, 0), (norms, 1)):
            out.append(
                strategy.experimental_distribute_values_from_function(
                    lambda ctx, p=part, s=stacks: tf.constant(s[ctx.replica_id_in_sync_group][p])
                )
            )
    return acts, norms


def engine_for(
    model: keras.Model, data, config: BackworkConfig, references=None, strategy=None
) -> _Engine:
    """The compiled engine of a run with ``config`` (its initial images drawn as
    ``backwork`` draws them), for benchmarks and tests of the step itself."""
    strategy = strategy or tf.distribute.get_strategy()
    prepared = prepare(model, data, config, references=references, build_references=True)
    init, _ = initial_batch(data, config, prepared.image_shape)
    return engine_of(prepared, init, strategy)


def engine_of(prepared: Prepared, init: np.ndarray, strategy) -> _Engine:
    """The engine of a prepared run (its references built) from the initial images."""
    config = prepared.config
    return _Engine(
        prepared.act,
        prepared.layer_names,
        prepared.coeffs,
        config,
        prepared.references,
        np.asarray(config.labels, np.int64),
        config.num_examples,
        init,
        strategy,
    )
