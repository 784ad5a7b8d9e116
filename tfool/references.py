"""Reference sets: each target label's training activations at the exposed layers, held once."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfool import _tf, costs
from tfool.data import Dataset

#: Storage types of reference activations; distances are always computed in float32.
REFERENCE_DTYPES = ("float32", "float16", "bfloat16")


@dataclasses.dataclass(frozen=True, eq=False)
class ReferenceSet:
    """Every target label's reference activations, one tensor per (layer, label), unpadded.

    Built once by ``build_reference_set`` and shared by the backworker and the report
    (``tfool.analysis.layer_distances``), so the activations exist in memory once.

    Attributes:
        labels: The target labels, in order.
        layer_names: The exposed layers the activations belong to (the probabilities
            layer excluded).
        activations: ``activations[k][i]``: the flattened activations of label
            ``labels[i]``'s training images at layer ``k``, in ``dtype``, stored ``[D_k,
            N_i]`` (one column per image: the layout whose product with the generated
            rows runs fastest) when ``transposed``, else ``[N_i, D_k]``.
        sq_norms: ``sq_norms[k][i]``: their float32 squared norms ``[N_i]``.
        dtype: Storage type of ``activations``, one of ``REFERENCE_DTYPES``.
        transposed: The layout of ``activations``.
        per_unit: Per layer, whether its values are sorted per unit (``[D_k, N_i]``, each
            row ascending: ``costs.sort_units``) for the per-unit minimum of the original
            program's ``fc`` term; empty: no layer is.
    """

    labels: tuple[int, ...]
    layer_names: tuple[str, ...]
    activations: tuple[tuple[tf.Tensor, ...], ...]
    sq_norms: tuple[tuple[tf.Tensor, ...], ...]
    dtype: str = "float32"
    transposed: bool = True
    per_unit: tuple[bool, ...] = ()

    def is_per_unit(self, k: int) -> bool:
        """Whether layer ``k`` is stored sorted per unit."""
        return bool(self.per_unit[k]) if self.per_unit else False

    @property
    def sizes(self) -> tuple[int, ...]:
        """Reference images per label."""
        if not self.sq_norms:
            return ()
        return tuple(int(n.shape[0]) for n in self.sq_norms[0])

    def rows(self, k: int, i: int) -> tf.Tensor:
        """Layer ``k`` of the ``i``-th label as float32 ``[N_i, D_k]`` rows (a copy)."""
        a = tf.cast(self.activations[k][i], tf.float32)
        return tf.transpose(a) if self.transposed else a

    @property
    def nbytes(self) -> int:
        """Bytes held by the activations and norms."""
        total = 0
        for layer in (*self.activations, *self.sq_norms):
            total += sum(int(np.prod(t.shape)) * t.dtype.size for t in layer)
        return total

    def for_labels(self, labels: Sequence[int]) -> ReferenceSet:
        """The same tensors (no copy), for a subset or reordering of the labels."""
        missing = [int(lbl) for lbl in labels if int(lbl) not in self.labels]
        if missing:
            raise ValueError(f"labels {missing} are not in the reference set {list(self.labels)}")
        pos = [self.labels.index(int(lbl)) for lbl in labels]
        return dataclasses.replace(
            self,
            labels=tuple(int(lbl) for lbl in labels),
            activations=tuple(tuple(layer[p] for p in pos) for layer in self.activations),
            sq_norms=tuple(tuple(layer[p] for p in pos) for layer in self.sq_norms),
        )

    def padded(self, k: int, positions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Layer ``k`` of the labels at ``positions`` stacked ``[G, N_max, D]`` (a float32
        copy, padding rows carrying ``costs.PAD_NORM``), for sharding across replicas.

        Raises:
            ValueError: layer ``k`` is sorted per unit (it has no rows to stack).
        """
        if self.is_per_unit(k):
            raise ValueError(
                f"layer {self.layer_names[k]!r} is stored sorted per unit (the original "
                "semantics): it cannot be split across replicas; run on one device"
            )
        acts = [self.activations[k][p] for p in positions]
        sizes = [int(self.sq_norms[k][p].shape[0]) for p in positions]
        n_max, dim = max(sizes), int(np.prod(acts[0].shape)) // sizes[0]
        out = np.zeros((len(acts), n_max, dim), np.float32)
        norms = np.full((len(acts), n_max), costs.PAD_NORM, np.float32)
        for j, (n, p) in enumerate(zip(sizes, positions)):
            out[j, :n] = self.rows(k, p).numpy()
            norms[j, :n] = self.sq_norms[k][p].numpy()
        return out, norms


def build_reference_set(
    act_model: keras.Model,
    data: Dataset,
    labels: Sequence[int],
    reference_size: int | None = None,
    dtype: str = "float32",
    batch_size: int = 500,
    per_unit_layers: Sequence[str] = (),
) -> ReferenceSet:
    """Computes every label's reference activations, label by label, straight into tensors.

    The only buffers beside the result are one label's activations while they are joined
    (its batches, then one layer at a time), so the peak is the result plus about one
    label's activations.

    Args:
        act_model: ``tfool.models.activation_model`` of the classifier (``layer_names``
            attribute, probabilities last).
        data: Training data; the images of each label form its reference set.
        labels: The target labels.
        reference_size: At most this many images per label (``None``: all).
        dtype: Storage type, one of ``REFERENCE_DTYPES``.
        batch_size: Images per forward pass.
        per_unit_layers: Layers stored sorted per unit (``costs.sort_units``) for the
            original program's per-unit minimum.

    Returns:
        A ``ReferenceSet``.

    Raises:
        ValueError: an unknown ``dtype``, a label without training images.
    """
    if dtype not in REFERENCE_DTYPES:
        raise ValueError(f"reference dtype {dtype!r} is not one of {REFERENCE_DTYPES}")
    names = tuple(act_model.layer_names[:-1])
    unknown = [n for n in per_unit_layers if n not in names]
    if unknown:
        raise ValueError(f"per_unit_layers {unknown} are not exposed layers {list(names)}")
    per_unit = tuple(n in per_unit_layers for n in names)
    store = tf.as_dtype(dtype)

    @tf.function(reduce_retracing=True, autograph=False)
    def forward(x):  # per layer: [D, b] columns in the storage type, their float32 norms
        out = act_model(x, training=False)
        flat = [tf.cast(tf.reshape(out[n], [tf.shape(x)[0], -1]), store) for n in names]
        return [(tf.transpose(f), costs.squared_norms(f)) for f in flat]

    acts: list[list[tf.Tensor]] = [[] for _ in names]
    norms: list[list[tf.Tensor]] = [[] for _ in names]
    for lbl in labels:
        x = data.train_of_class(int(lbl))
        if reference_size is not None:
            x = x[:reference_size]
        if len(x) == 0:
            raise ValueError(f"label {int(lbl)} has no training images to form a reference set")
        parts = _tf.fold_batches(_forward_into(forward, x), len(x), batch_size, [[] for _ in names])
        for k in range(len(names)):
            columns = tf.concat([c for c, _ in parts[k]], axis=1)
            norms[k].append(tf.concat([n for _, n in parts[k]], axis=0))
            parts[k] = []  # the pieces go as soon as they are joined
            acts[k].append(costs.sort_units(columns) if per_unit[k] else columns)
            del columns
        _tf.release_free_memory()  # this label's buffers, so they do not stay resident
    return ReferenceSet(
        labels=tuple(int(lbl) for lbl in labels),
        layer_names=names,
        activations=tuple(tuple(a) for a in acts),
        sq_norms=tuple(tuple(n) for n in norms),
        dtype=dtype,
        per_unit=per_unit if any(per_unit) else (),
    )


def _forward_into(forward, x: np.ndarray):
    """``fold_batches``' step: the rows' ``(columns, norms)`` of every layer appended to
    that layer's parts."""

    def step(parts: list, rows: slice) -> list:
        for k, pair in enumerate(forward(tf.constant(x[rows]))):
            parts[k].append(pair)
        return parts

    return step
