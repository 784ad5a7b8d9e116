"""What backworked images are: distances to the training data and within a batch (in
pixels and at every exposed layer), the run's summary, the worst-classified training images."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from tfool import costs
from tfool._tf import fold_batches
from tfool.classifier import activation_model
from tfool.data import Dataset
from tfool.models import predict_probabilities
from tfool.references import ReferenceSet, build_reference_set

if TYPE_CHECKING:  # annotations only; tfool.backwork never imports this module
    from tfool.backwork import BackworkConfig, BackworkResult, Prepared


def _pairwise_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[len(a), len(b)]`` Euclidean distances between flattened rows."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d, 0.0))


def image_distances(images: np.ndarray, train_images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-space measures of how unlike the data and how diverse backworked images are.

    Args:
        images: ``[L, E, H, W, C]`` images.
        train_images: ``[N, H, W, C]`` training images.

    Returns:
        ``(nearest [L], pairwise [L])``: per label, the mean Euclidean distance of its
        images to their nearest training image, and the mean distance between two of its
        images (``nan`` with a single image).
    """
    nearest, pairwise = [], []
    for group in images:

        def nearer(closest, rows, group=group):  # streamed: no float64 copy of the data
            return np.minimum(closest, _pairwise_l2(group, train_images[rows]).min(axis=1))

        closest = fold_batches(nearer, len(train_images), 4096, np.full(len(group), np.inf))
        nearest.append(float(closest.mean()))
        if len(group) < 2:
            pairwise.append(float("nan"))
            continue
        d = _pairwise_l2(group, group)
        pairwise.append(float(d[~np.eye(len(group), dtype=bool)].mean()))
    return np.asarray(nearest), np.asarray(pairwise)


def summarize(
    result: BackworkResult, data: Dataset | None, class_names: Sequence[str] | None = None
) -> dict:
    """A JSON-ready summary: per label convergence, steps, probabilities and distances.

    Without ``data`` the distances to the training set are ``nan``.
    """
    target = result.target_probs
    if data is not None:
        nearest, pairwise = image_distances(result.images, data.x_train)
    else:
        nearest = np.full(len(result.labels), np.nan)
        _, pairwise = image_distances(result.images, result.images[0, :1])
    names = class_names or (data.class_names if data is not None else ())
    per_label = []
    for i, lbl in enumerate(result.labels):
        per_label.append(
            {
                "label": int(lbl),
                "name": str(names[lbl]) if lbl < len(names) else str(lbl),
                "converged": bool(result.converged[i]),
                "steps": int(result.label_steps[i]),
                "reinits": int(result.reinits[i]),
                "min_target_prob": float(target[i].min()),
                "mean_target_prob": float(target[i].mean()),
                "mean_nearest_train_distance": float(nearest[i]),
                "mean_pairwise_distance": float(pairwise[i]),
            }
        )
    return {
        "labels": per_label,
        "steps": int(result.steps),
        "all_converged": bool(result.converged.all()),
        "mean_nearest_train_distance": float(np.mean(nearest)) if data is not None else None,
        "mean_pairwise_distance": float(np.nanmean(pairwise))
        if np.isfinite(pairwise).any()
        else None,
        "pixels_in_range": [float(result.images.min()), float(result.images.max())],
        "layer_names": list(result.layer_names),
        "final_cost": [float(c) for c in result.cost],
        "wall_time_s": float(result.wall_time),
        "interrupted": bool(result.interrupted),
    }


def worst_classified(
    model: keras.Model,
    data: Dataset,
    labels: Sequence[int],
    num_examples: int,
    from_logits: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The training images of each label that the model gives the lowest true-label probability.

    Returns:
        ``(images [L, E, H, W, C], probs [L, E])``, the worst first; ``E`` is
        ``num_examples``, or fewer when a label has fewer training images (the smallest
        count among ``labels``), so that every label has a full row.

    Raises:
        ValueError: a label without training images.
    """
    counts = {int(lbl): int(np.sum(data.y_train == lbl)) for lbl in labels}
    empty = [lbl for lbl, n in counts.items() if n == 0]
    if empty:
        raise ValueError(f"labels {empty} have no training images in {data.name}")
    per = min(int(num_examples), *counts.values())
    probs = predict_probabilities(model, data.x_train, from_logits)  # batches of the array
    images, chosen = [], []
    for lbl in labels:
        idx = np.flatnonzero(data.y_train == lbl)
        p = probs[idx, lbl]
        order = np.argsort(p, kind="stable")[:per]
        images.append(data.x_train[idx[order]])
        chosen.append(p[order])
    return np.stack(images), np.stack(chosen)


def layer_distances(
    model: keras.Model,
    data: Dataset,
    result: BackworkResult,
    layer_names: Sequence[str] | None = None,
    from_logits: bool | None = None,
    reference_size: int | None = None,
    references: ReferenceSet | None = None,
) -> dict[str, dict[str, float]]:
    """How far the images are from their label's training images at every exposed layer.

    The distances the cost works on (mean squared differences of flattened activations):
    per layer, the mean over images of the distance to the nearest training image of the
    same label, and the mean distance between two images of the same label.

    Args:
        model: The classifier.
        data: Its training data (used only when ``references`` is ``None``).
        result: The backworking result.
        layer_names: Exposed layers (default: the result's).
        from_logits: Whether the model returns logits.
        reference_size: Reference images per label when the set is built here.
        references: The run's reference set (``reference_set``), reused rather than
            computed a second time.

    Returns:
        ``{layer: {"nearest_train": float, "within_batch": float}}`` for every exposed
        layer but the probabilities (``within_batch`` is ``nan`` with one image per label).
    """
    act = activation_model(model, layer_names or result.layer_names, from_logits=from_logits)
    names = act.layer_names[:-1]
    if references is None:
        references = build_reference_set(act, data, result.labels, reference_size)
    else:
        references = references.for_labels(result.labels)
    num_labels, per = result.images.shape[:2]
    out = act(result.images.reshape(-1, *result.images.shape[2:]), training=False)
    distances = {}
    for name in names:
        gen = tf.reshape(out[name], (num_labels, per, -1))
        k = references.layer_names.index(name)
        if references.is_per_unit(k):  # the distance the original's fc term works on
            nearest = costs.nearest_unit_distance(gen, list(references.activations[k])).numpy()
        else:
            nearest = costs.nearest_distance(
                gen,
                list(references.activations[k]),
                list(references.sq_norms[k]),
                transposed=references.transposed,
            ).numpy()
        within = float("nan")
        if per > 1:
            pair = costs.pairwise_distances(gen).numpy()
            within = float(pair[:, ~np.eye(per, dtype=bool)].mean())
        distances[name] = {"nearest_train": float(nearest.mean()), "within_batch": within}
    return distances


@dataclasses.dataclass(frozen=True, eq=False)
class BackworkAnalysis:
    """What the files of a backworking run show, computed once (``analyse_backwork``).

    Attributes:
        summary: ``summarize``'s summary, with the data's source, name and classes and the
            per-layer distances (``layer_distances``) when there is data.
        row_names: The class name of every label of the result.
        worst: The worst-classified training images and their probabilities
            (``worst_classified``); ``None`` without data.
        salient: ``[L, E, H, W, C]`` salient-feature masks of the images.
        salient_keep: Pixels kept in each mask.
        attributions: Every attribution method's maps of the first image of the first
            labels (``tfool.attribution.attribute_all``); ``None`` when skipped.
    """

    summary: dict
    row_names: list[str]
    worst: tuple[np.ndarray, np.ndarray] | None
    salient: np.ndarray
    salient_keep: int
    attributions: dict | None


def analyse_backwork(
    result: BackworkResult,
    model: keras.Model,
    data: Dataset | None,
    config: BackworkConfig,
    salient_keep: int = 200,
    attribution_images: int = 4,
    class_names: Sequence[str] | None = None,
    references: ReferenceSet | None = None,
    prepared: Prepared | None = None,
) -> BackworkAnalysis:
    """Everything ``tfool.report.write_backwork_files`` writes about a run, computed.

    Args:
        result: The backworking result.
        model: The classifier that was fooled.
        data: Its data; ``None`` skips the distances to it, the worst-classified training
            images and the attributions.
        config: The run's settings.
        salient_keep: Pixels kept in the salient-feature masks.
        attribution_images: Labels (first image each) given to every attribution method;
            0 skips them.
        class_names: Names of the classes (default: the data's).
        references: The run's reference set, reused for the per-layer distances (built
            again when ``None`` and ``prepared`` holds none).
        prepared: The run's ``tfool.backwork.prepare``, whose reference set is reused.

    Returns:
        A ``BackworkAnalysis``.
    """
    from tfool import attribution

    if references is None and prepared is not None:
        references = prepared.references
    names_all = class_names or data.class_names
    summary = summarize(result, data, names_all)
    if data is not None:  # the data's classes: the columns of images.npz's probabilities
        summary.update(
            {"data_source": data.source, "dataset": data.name, "class_names": list(names_all)}
        )
        if len(result.layer_names) > 1:
            summary["layer_distances"] = layer_distances(
                model,
                data,
                result,
                from_logits=config.from_logits,
                reference_size=config.reference_size,
                references=references,
            )
    worst = None
    if data is not None:
        worst = worst_classified(
            model, data, result.labels, result.images.shape[1], config.from_logits
        )
    flat = result.images.reshape(-1, *result.images.shape[2:])
    targets = np.repeat(result.labels, result.images.shape[1])
    keep = min(salient_keep, int(np.prod(flat.shape[1:])))
    masks = attribution.salient_features(
        model, flat, targets, num_keep=keep, from_logits=config.from_logits
    )
    attrs = None
    if attribution_images and data is not None:
        # one backworked image per label (the first ones), every attribution method
        attrs = attribution.attribute_all(
            model,
            result.images[:attribution_images, 0],
            result.labels[:attribution_images],
            from_logits=config.from_logits,
        )
    row_names = [str(names_all[int(lbl)]) for lbl in result.labels]
    return BackworkAnalysis(
        summary, row_names, worst, masks.reshape(result.images.shape), keep, attrs
    )
