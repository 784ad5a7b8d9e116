"""Backworking: optimise input images from noise into confident, unlike-the-data examples."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import zipfile
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfool import _tf, classifier, costs, interrupts
from tfool.classifier import activation_model, default_layer_names  # noqa: F401
from tfool.data import Dataset
from tfool.references import REFERENCE_DTYPES, ReferenceSet, build_reference_set

logger = logging.getLogger(__name__)

INITS = ("uniform", "train_mean")
#: ``tfool``: this port's choices (the default); ``original``: the original program's.
SEMANTICS = ("tfool", "original")
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8  # TF1 AdamOptimizer, as in the original


@dataclasses.dataclass(frozen=True)
class BackworkConfig:
    """Settings of a backworking run; the defaults are the MNIST post's.

    Attributes:
        labels: Target labels, all backworked together in one batch.
        num_examples: Images per label.
        layer_cost_coeffs: One weight per exposed layer, softmax last (``None``: the post's
            ``logspace(-L, -1, L)`` with the last times 100).
        reference_cost_coeff: Weight of the distance-to-training-data terms.
        batch_cost_coeff: Weight of the distance-within-batch terms.
        learning_rate: Adam learning rate on the input.
        prob_cap_min: A label converges when its minimum target probability exceeds this...
        prob_cap_mean: ...or when its mean target probability exceeds this.
        num_mono_dec_saves: Length of the window of saves whose target probability, never
            increasing, triggers re-initialisation.
        reinit_below: Only rows whose last probability is below this are re-initialised.
        save_freq: Steps between saves (forward pass, history, tests).
        min_num_steps: No convergence test before this step.
        max_num_steps: Hard limit on optimisation steps.
        tolerance: A label also stops when its cost changes by less than this between
            saves (after ``min_num_steps``); 0 disables the test.
        init: ``uniform`` noise in the input range, or ``train_mean`` (averages of the label's
            shuffled training images split into ``num_examples`` groups).
        clip_inputs: Project the inputs onto ``[input_min, input_max]`` after every step.
        seed: Seed of the initial and re-initialisation noise (one stream per label).
        softmax_cost: ``one_minus_p`` (the post) or ``cross_entropy``.
        layer_names: Exposed layers of the model, the class probabilities last (``None``:
            ``default_layer_names(model)``; see ``tfool.classifier.activation_model``).
        from_logits: What the model returns: ``None`` reads its graph (a final softmax is
            stripped, so the model's own probabilities are reported), ``True`` logits,
            ``False`` probabilities (see ``tfool.classifier.logits_model``).
        input_min: Lower end of the input range.
        input_max: Upper end of the input range.
        reference_size: At most this many training images per label form its reference set
            (``None``: all).
        reference_dtype: Storage type of the reference activations (``float32``,
            ``float16`` or ``bfloat16``); the costs are computed in float32 either way.
        chunk_size: Reference rows per distance chunk (``None``: all at once).
        history_every: Keep every k-th save in the history (1: all).
        max_history: At most this many snapshots are kept; past it every other one is
            dropped and ``history_every`` doubles, so memory stays bounded.
        jit_compile: Compile the step with XLA (off by default: slower on CPU here).
        semantics: ``tfool`` (the default) or ``original``: the original program's cost
            variants (per-unit minimum on dense layers such as ``fc``, self-pairs in the
            batch cost), its loop order (Adam step, then save and test; tolerance tested
            every step) and its Adam (one step count per label, moments kept when a row
            is re-initialised). ``BackworkConfig.original()`` also sets its step limits,
            window and clipping.
    """

    labels: tuple[int, ...] = tuple(range(10))
    num_examples: int = 8
    layer_cost_coeffs: tuple[float, ...] | None = None
    reference_cost_coeff: float = 0.5
    batch_cost_coeff: float = 0.5
    learning_rate: float = 0.01
    prob_cap_min: float = 0.999
    prob_cap_mean: float = 1.0
    num_mono_dec_saves: int = 5
    reinit_below: float = 0.99
    save_freq: int = 1
    min_num_steps: int = 10
    max_num_steps: int = 3000
    tolerance: float = 0.0
    init: str = "uniform"
    clip_inputs: bool = True
    seed: int = 0
    softmax_cost: str = "one_minus_p"
    layer_names: tuple[str, ...] | None = None
    from_logits: bool | None = None
    input_min: float = 0.0
    input_max: float = 1.0
    reference_size: int | None = None
    reference_dtype: str = "float32"
    chunk_size: int | None = None
    history_every: int = 1
    max_history: int = 400
    jit_compile: bool = False
    semantics: str = "tfool"

    @classmethod
    def paper(cls, **overrides) -> BackworkConfig:
        """The MNIST post's settings (the defaults), with ``overrides``."""
        return cls(**overrides)

    @classmethod
    def imagenet_rubbish(cls, **overrides) -> BackworkConfig:
        """The rubbish-image post's settings for an ImageNet classifier: only the class
        probabilities exposed (no reference sets, no batch cost), cross-entropy softmax
        cost, Adam learning rate 0.1; any field can be overridden."""
        settings = {
            "layer_names": ("probabilities",),
            "batch_cost_coeff": 0.0,
            "learning_rate": 0.1,
            "softmax_cost": "cross_entropy",
            **overrides,
        }
        return cls(**settings)

    @classmethod
    def original(cls, **overrides) -> BackworkConfig:
        """The original program's settings and semantics (``cnn_backwork.py``).

        ``semantics="original"``, ``min_num_steps=0``, ``max_num_steps=60``,
        ``num_mono_dec_saves=3``, ``save_freq=1``, no clipping after the initial values,
        and room in the history for every save; any field can be overridden.
        """
        settings = {
            "semantics": "original",
            "min_num_steps": 0,
            "max_num_steps": 60,
            "num_mono_dec_saves": 3,
            "save_freq": 1,
            "clip_inputs": False,
            **overrides,
        }
        settings.setdefault("max_history", max(400, settings["max_num_steps"] + 1))
        return cls(**settings)

    def __post_init__(self):
        try:
            labels = tuple(self.labels)
        except TypeError:
            raise ValueError(
                f"labels={self.labels!r} must be a sequence of integer class indices"
            ) from None
        bad = [
            lbl
            for lbl in labels
            if isinstance(lbl, (bool, np.bool_)) or not isinstance(lbl, (int, np.integer))
        ]
        if bad:
            raise ValueError(
                f"labels={list(labels)} holds {bad[0]!r}, not an integer class index; "
                "expected integers such as (0, 3)"
            )
        object.__setattr__(self, "labels", tuple(int(lbl) for lbl in labels))
        if self.layer_cost_coeffs is not None:
            object.__setattr__(
                self, "layer_cost_coeffs", tuple(float(c) for c in self.layer_cost_coeffs)
            )
        if self.layer_names is not None:
            object.__setattr__(self, "layer_names", tuple(self.layer_names))
        _validate_config(self)

    def coeffs_for(self, num_layers: int) -> tuple[float, ...]:
        """The layer cost weights for a model exposing ``num_layers`` layers."""
        if self.layer_cost_coeffs is None:
            return costs.default_layer_cost_coeffs(num_layers)
        return self.layer_cost_coeffs


def _validate_config(c: BackworkConfig) -> None:
    if not c.labels:
        raise ValueError("labels is empty; expected at least one target label")
    if len(set(c.labels)) != len(c.labels):
        raise ValueError(f"labels={list(c.labels)} has duplicates")
    if min(c.labels) < 0:
        raise ValueError(f"labels={list(c.labels)} has a negative label")
    if c.num_examples < 1:
        raise ValueError(f"num_examples={c.num_examples} must be >= 1")
    for name in ("reference_cost_coeff", "batch_cost_coeff", "learning_rate", "tolerance"):
        value = getattr(c, name)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}={value} must be a finite number >= 0")
    if c.learning_rate <= 0:
        raise ValueError(f"learning_rate={c.learning_rate} must be > 0")
    if c.layer_cost_coeffs is not None:
        if not c.layer_cost_coeffs:
            raise ValueError("layer_cost_coeffs is empty; expected one weight per exposed layer")
        bad = [v for v in c.layer_cost_coeffs if not math.isfinite(v)]
        if bad:
            raise ValueError(
                f"layer_cost_coeffs={list(c.layer_cost_coeffs)} has non-finite entries"
            )
    for name in ("prob_cap_min", "prob_cap_mean"):
        value = getattr(c, name)
        if not (0.0 < value <= 1.0):
            raise ValueError(f"{name}={value} must lie in (0, 1]")
    if not (0.0 < c.reinit_below <= 1.0):
        raise ValueError(f"reinit_below={c.reinit_below} must lie in (0, 1]")
    if c.num_mono_dec_saves < 2:
        raise ValueError(f"num_mono_dec_saves={c.num_mono_dec_saves} must be >= 2")
    for name in ("save_freq", "max_num_steps", "history_every", "max_history"):
        if getattr(c, name) < 1:
            raise ValueError(f"{name}={getattr(c, name)} must be >= 1")
    if c.min_num_steps < 0:
        raise ValueError(f"min_num_steps={c.min_num_steps} must be >= 0")
    if c.semantics not in SEMANTICS:
        raise ValueError(f"semantics={c.semantics!r} is not one of {SEMANTICS}")
    if c.init not in INITS:
        raise ValueError(f"init={c.init!r} is not one of {INITS}")
    if c.softmax_cost not in costs.SOFTMAX_COSTS:
        raise ValueError(f"softmax_cost={c.softmax_cost!r} is not one of {costs.SOFTMAX_COSTS}")
    if not c.input_min < c.input_max:
        raise ValueError(f"input_min={c.input_min} must be below input_max={c.input_max}")
    if c.reference_size is not None and c.reference_size < 1:
        raise ValueError(f"reference_size={c.reference_size} must be >= 1 or None")
    if c.reference_dtype not in REFERENCE_DTYPES:
        raise ValueError(f"reference_dtype={c.reference_dtype!r} is not one of {REFERENCE_DTYPES}")
    if c.chunk_size is not None and c.chunk_size < 1:
        raise ValueError(f"chunk_size={c.chunk_size} must be >= 1 or None")
    if c.layer_names is not None and not c.layer_names:
        raise ValueError("layer_names is empty; expected at least the probabilities layer")


@dataclasses.dataclass(frozen=True, eq=False)
class SaveEvent:
    """What a callback sees at every save.

    Attributes:
        step: Optimisation steps done so far.
        labels: The target labels ``[L]``.
        target_probs: ``[L, E]`` probability of each row's target label.
        cost: ``[L]`` total cost per label.
        terms: Cost terms (``reference``/``batch`` ``[layers-1, L]``, ``softmax`` ``[L]``).
        reinits: ``[L]`` re-initialisations so far.
        active: ``[L]`` whether each label is still being optimised.
        images: ``[L, E, H, W, C]`` current images.
    """

    step: int
    labels: np.ndarray
    target_probs: np.ndarray
    cost: np.ndarray
    terms: dict
    reinits: np.ndarray
    active: np.ndarray
    images: np.ndarray


class BackworkCallback:
    """Hooks called by ``backwork``; override what you need."""

    def on_start(self, config: BackworkConfig, num_rows: int) -> None:
        """Called once before the first step."""

    def on_save(self, event: SaveEvent) -> None:
        """Called at every save."""

    def on_end(self, result: BackworkResult) -> None:
        """Called once with the result (also after Ctrl-C)."""


@dataclasses.dataclass(frozen=True, eq=False)
class BackworkResult:
    """What a backworking run found.

    Attributes:
        labels: ``[L]`` target labels.
        images: ``[L, E, H, W, C]`` final images.
        probabilities: ``[L, E, C]`` their class probabilities.
        history_steps: ``[S]`` step of each kept snapshot.
        history_images: ``[S, L, E, H, W, C]`` snapshot images.
        history_probs: ``[S, L, E, C]`` snapshot probabilities.
        steps: Steps taken in all.
        label_steps: ``[L]`` steps taken by each label (until it stopped).
        reinits: ``[L]`` re-initialisations per label.
        converged: ``[L]`` whether the label reached its probability cap.
        cost: ``[L]`` final total cost per label.
        cost_terms: Final ``reference`` and ``batch`` ``[layers-1, L]`` and ``softmax`` ``[L]``.
        layer_names: Exposed layers, softmax last.
        wall_time: Seconds.
        interrupted: Whether the run was stopped by Ctrl-C.
    """

    labels: np.ndarray
    images: np.ndarray
    probabilities: np.ndarray
    history_steps: np.ndarray
    history_images: np.ndarray
    history_probs: np.ndarray
    steps: int
    label_steps: np.ndarray
    reinits: np.ndarray
    converged: np.ndarray
    cost: np.ndarray
    cost_terms: dict
    layer_names: tuple[str, ...]
    wall_time: float
    interrupted: bool = False

    @property
    def target_probs(self) -> np.ndarray:
        """``[L, E]`` probability of each image's target label."""
        return target_probabilities(self.probabilities, self.labels)


def target_probabilities(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[L, E]`` probability of each row's label, from ``probs [L, E, C]`` and ``labels [L]``."""
    idx = np.broadcast_to(np.asarray(labels)[:, None, None], (*probs.shape[:2], 1))
    return np.take_along_axis(probs, idx, axis=-1)[..., 0]


def _check_inputs(model, data: Dataset | None, config: BackworkConfig, names, coeffs) -> None:
    num_classes = _tf.num_classes(model)
    if data is not None and data.num_classes != num_classes:
        raise ValueError(
            f"model {model.name!r} has {num_classes} class outputs; the data "
            f"{data.name!r} has {data.num_classes} classes"
        )
    bad = [lbl for lbl in config.labels if not 0 <= lbl < num_classes]
    if bad:
        raise ValueError(f"labels {bad} are outside the model's classes 0..{num_classes - 1}")
    if len(coeffs) != len(names):
        raise ValueError(
            f"layer_cost_coeffs has {len(coeffs)} entries but the model exposes "
            f"{len(names)} layers ({', '.join(names)})"
        )
    uses_batch = config.batch_cost_coeff != 0 and any(c != 0 for c in coeffs[:-1])
    if uses_batch and config.num_examples < 2:
        raise ValueError(
            f"num_examples={config.num_examples} but the batch cost needs >= 2 "
            "(or set batch_cost_coeff=0)"
        )
    if data is None:
        if len(names) > 1 or config.init == "train_mean":
            raise ValueError(
                "data=None: reference sets (layers before the probabilities) and "
                "init='train_mean' need training images"
            )
        classifier.image_shape(model)
        return
    empty = [lbl for lbl in config.labels if not np.any(data.y_train == lbl)]
    if empty and (len(names) > 1 or config.init == "train_mean"):
        raise ValueError(f"labels {empty} have no training images to form a reference set")
    classifier.image_shape(model, data.image_shape)


def _image_shape(model, data: Dataset | None) -> tuple[int, ...]:
    return classifier.image_shape(model, None if data is None else data.image_shape)


def reference_set(
    model: keras.Model, data: Dataset | None, config: BackworkConfig = BackworkConfig()
) -> ReferenceSet:
    """The reference set a run with ``config`` uses: build it once, pass it to ``backwork``
    and ``layer_distances`` so the activations are held once.

    Args:
        model: The classifier.
        data: Its training data.
        config: Supplies ``labels``, ``layer_names``, ``from_logits``, ``reference_size``
            and ``reference_dtype``.

    Returns:
        A ``tfool.references.ReferenceSet``, empty when only the probabilities are exposed.

    Raises:
        ValueError: as ``backwork`` for bad labels, data or layer weights.
    """
    act = activation_model(model, config.layer_names, from_logits=config.from_logits)
    _check_inputs(model, data, config, act.layer_names, config.coeffs_for(len(act.layer_names)))
    if len(act.layer_names) == 1:
        return ReferenceSet(tuple(config.labels), (), (), (), config.reference_dtype)
    return build_reference_set(
        act,
        data,
        config.labels,
        config.reference_size,
        config.reference_dtype,
        per_unit_layers=_per_unit_layers(act, config),
    )


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """The memory a backworking run needs, in bytes, by part (a rough upper estimate).

    Attributes:
        references: The reference sets (every exposed layer, every label's images).
        batch: The optimised images, Adam's moments and the activations and gradients of
            one step.
        distances: The distance matrix of one step (rows by references, or a chunk).
        history: The kept snapshots of images and probabilities.
    """

    references: int
    batch: int
    distances: int
    history: int

    @property
    def total(self) -> int:
        """The sum of the parts."""
        return self.references + self.batch + self.distances + self.history

    def parts(self) -> str:
        """``"references 2.7, batch 0.1, distances 0.4, history 9.1"`` (GB)."""
        return ", ".join(
            f"{name} {getattr(self, name) / 1e9:.1f}"
            for name in ("references", "batch", "distances", "history")
        )

    def describe(self) -> str:
        """``"12.3 GB (references 2.7, batch 0.1, distances 0.4, history 9.1)"``."""
        return f"{self.total / 1e9:.1f} GB ({self.parts()})"


def estimate_memory(
    model: keras.Model, data: Dataset | None, config: BackworkConfig = BackworkConfig()
) -> MemoryEstimate:
    """What a ``backwork`` run with ``config`` will hold, from the layer sizes and the
    counts alone (nothing is computed), so a run too large for the machine can be refused
    before any work.

    Raises:
        ValueError: as ``reference_set`` for bad labels or layer names.
    """
    act = activation_model(model, config.layer_names, from_logits=config.from_logits)
    dims = [int(np.prod(out.shape[1:])) for out in act.outputs]
    image = int(np.prod(_image_shape(model, data)))
    rows = len(config.labels) * int(config.num_examples)
    num_refs = 0
    if data is not None and len(dims) > 1:
        counts = np.bincount(data.y_train, minlength=max(config.labels) + 1)
        for label in config.labels:
            count = int(counts[label])
            num_refs += (
                count if config.reference_size is None else min(count, config.reference_size)
            )
    width = 2 if config.reference_dtype in ("float16", "bfloat16") else 4
    references = num_refs * (sum(dims[:-1]) * width + 4 * len(dims[:-1]))  # values, norms
    # x, m, v and the gradient of every row, plus the model's activations forward and back
    batch = rows * image * 4 * 4 + max(
        _tf.batch_memory(model, rows, gradients=True), rows * sum(dims) * 4 * 2
    )
    per_label = num_refs // max(len(config.labels), 1)
    chunk = per_label if config.chunk_size is None else min(per_label, config.chunk_size)
    distances = int(config.num_examples) * chunk * 4 * 3 * len(config.labels)
    snapshots = min(config.max_num_steps // config.history_every + 2, config.max_history)
    history = snapshots * rows * (image + dims[-1]) * 4
    return MemoryEstimate(int(references), int(batch), int(distances), int(history))


def _per_unit_layers(act: keras.Model, config: BackworkConfig) -> tuple[str, ...]:
    """The layers whose reference term takes the minimum per unit: under the original
    semantics its ``fc`` rule, generalised to every dense (``[B, D]``) layer."""
    if config.semantics != "original":
        return ()
    return tuple(n for n in act.layer_names[:-1] if len(act.output[n].shape) == 2)


def _check_references(refs: ReferenceSet, config: BackworkConfig, act) -> ReferenceSet:
    names = act.layer_names
    if tuple(refs.layer_names) != tuple(names[:-1]):
        raise ValueError(
            f"references hold layers {list(refs.layer_names)} but the run exposes "
            f"{list(names[:-1])}"
        )
    want = _per_unit_layers(act, config)
    have = tuple(n for k, n in enumerate(refs.layer_names) if refs.is_per_unit(k))
    if have != want:
        raise ValueError(
            f"references built for the other semantics than semantics={config.semantics!r}: "
            "build them with reference_set(model, data, config) for this config"
        )
    return refs.for_labels(config.labels)


def check_initial_images(
    images: np.ndarray, config: BackworkConfig, image_shape: Sequence[int]
) -> np.ndarray:
    """``images`` as float32 ``[L, E, H, W, C]``, checked against the run's labels,
    examples per label, image shape and input range.

    Raises:
        ValueError: another shape, non-finite values or values outside the input range.
    """
    arr = np.asarray(images, np.float32)
    want = (len(config.labels), config.num_examples, *image_shape)
    if arr.shape != want:
        raise ValueError(
            f"initial_images has shape {arr.shape}, expected {want} "
            "(labels, num_examples, *image shape)"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("initial_images holds NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < config.input_min or hi > config.input_max:
        raise ValueError(
            f"initial_images spans [{lo:g}, {hi:g}], expected values inside "
            f"[{config.input_min:g}, {config.input_max:g}]"
        )
    return arr


def _initial_images(data: Dataset, config: BackworkConfig, label: int, shape, rng) -> np.ndarray:
    if config.init == "uniform":
        return rng.uniform(config.input_min, config.input_max, size=shape).astype(np.float32)
    x = data.train_of_class(label)
    x = x[rng.permutation(len(x))]
    groups = np.array_split(x, shape[0])
    means = [g.mean(axis=0) if len(g) else rng.uniform(0, 1, shape[1:]) for g in groups]
    return np.stack(means).astype(np.float32)


class _Tracker:
    """The monotonic-decline windows of every row."""

    def __init__(self, rows: int, window: int):
        self.window = window
        self.values = np.full((rows, window), np.nan, np.float32)
        self.count = np.zeros(rows, np.int64)

    def push(self, probs: np.ndarray, rows_mask: np.ndarray) -> None:
        self.values[rows_mask] = np.roll(self.values[rows_mask], -1, axis=1)
        self.values[rows_mask, -1] = probs[rows_mask]
        self.count[rows_mask] = np.minimum(self.count[rows_mask] + 1, self.window)

    def declining(self, below: float) -> np.ndarray:
        full = self.count >= self.window
        diffs = np.diff(self.values, axis=1)
        never_up = np.all(diffs <= 0, axis=1)
        return full & never_up & (self.values[:, -1] < below)

    def clear(self, rows_mask: np.ndarray) -> None:
        self.values[rows_mask] = np.nan
        self.count[rows_mask] = 0


class _History:
    """Snapshots thinned so that at most ``max_len`` are kept."""

    def __init__(self, every: int, max_len: int):
        self.every, self.max_len, self.seen = every, max_len, 0
        self.steps, self.images, self.probs = [], [], []

    def add(self, step: int, images: np.ndarray, probs: np.ndarray) -> None:
        keep = self.seen % self.every == 0
        self.seen += 1
        if not keep:
            return
        self.steps.append(step)
        self.images.append(images.copy())
        self.probs.append(probs.copy())
        if len(self.steps) > self.max_len:
            self.steps, self.images, self.probs = self.steps[::2], self.images[::2], self.probs[::2]
            self.every *= 2

    def arrays(self, image_shape, probs_shape):
        if not self.steps:
            return (
                np.zeros(0, np.int64),
                np.zeros((0, *image_shape), np.float32),
                np.zeros((0, *probs_shape), np.float32),
            )
        return np.asarray(self.steps), np.stack(self.images), np.stack(self.probs)


def backwork(
    model: keras.Model,
    data: Dataset | None,
    config: BackworkConfig = BackworkConfig(),
    strategy: tf.distribute.Strategy | None = None,
    callbacks: Sequence[BackworkCallback] | None = None,
    initial_images: np.ndarray | None = None,
    references: ReferenceSet | None = None,
) -> BackworkResult:
    """Backworks ``config.num_examples`` images for every label of ``config.labels``.

    All labels share one trainable batch; each row is scored against its own label's
    reference set and the batch cost pairs rows of the same label only, so the result
    equals running the labels one by one with the same seed. A converged label is frozen
    (its rows and Adam moments stop changing) while the others go on.

    Args:
        model: A Keras classifier (logits unless ``config.from_logits`` is False); frozen.
        data: Its training data; the images of each target label form its reference set.
            ``None`` is allowed when only the probabilities are exposed (rubbish images).
        config: The run's settings.
        strategy: A ``tf.distribute`` strategy; variables are created in its scope.
        callbacks: ``BackworkCallback`` objects (progress, TensorBoard, ...).
        initial_images: Start from these images ``[L, E, H, W, C]`` (one row per label of
            ``config.labels``, ``config.num_examples`` each, inside ``[input_min,
            input_max]``: a previous result, real digits, ...) instead of ``config.init``.
            Re-initialisations still draw fresh noise.
        references: The reference set to use, from ``reference_set`` (built here when
            ``None``); pass the same one to ``layer_distances`` to hold it once.

    Returns:
        A ``BackworkResult``; after Ctrl-C, what was found so far (``interrupted=True``).

    Raises:
        ValueError: labels outside the model's classes, too few examples for the batch
            cost, coefficients that do not match the exposed layers, a label with no
            training images, training images of another shape than the model's input,
            ``initial_images`` of the wrong shape or range, a reference set of other
            layers or labels.
    """
    callbacks = list(callbacks or [])
    strategy = strategy or tf.distribute.get_strategy()
    act = activation_model(model, config.layer_names, from_logits=config.from_logits)
    names = act.layer_names
    coeffs = config.coeffs_for(len(names))
    _check_inputs(model, data, config, names, coeffs)
    image_shape = _image_shape(model, data)
    logger.info(
        "exposed layers of %s: %s (the last: the class probabilities)",
        model.name,
        ", ".join(names),
    )
    if initial_images is not None:
        initial_images = check_initial_images(initial_images, config, image_shape)
    start_time = time.perf_counter()

    labels = np.asarray(config.labels, np.int64)
    num_labels, per = len(labels), config.num_examples
    rows = num_labels * per
    num_classes = _tf.num_classes(model)
    if references is None:
        references = reference_set(model, data, config)
    else:
        references = _check_references(references, config, act)
    rngs = [np.random.default_rng([config.seed, int(lbl)]) for lbl in labels]
    init = np.concatenate(
        [
            _initial_images(data, config, int(lbl), (per, *image_shape), rng)
            for lbl, rng in zip(labels, rngs)
        ]
    )
    if initial_images is not None:  # the seeded draws above keep the noise streams aligned
        init = initial_images.reshape(rows, *image_shape)
    classifier.probe(model, init, config.from_logits)

    engine = _Engine(act, names, coeffs, config, references, labels, per, init, strategy)
    for cb in callbacks:
        cb.on_start(config, rows)

    state = _LoopState(config, labels, per, image_shape, init, num_classes, callbacks)
    loop = _original_loop if config.semantics == "original" else _tfool_loop
    try:
        loop(engine, state, config, rngs)
    except KeyboardInterrupt:
        state.interrupted = True
        logger.warning("backwork interrupted at step %d; keeping what was found", state.step)
    result = state.result(names, time.perf_counter() - start_time)
    for cb in callbacks:
        cb.on_end(result)
    return result


def _engine_for(model, data, config: BackworkConfig, references=None, strategy=None):
    """The compiled engine of a run with ``config`` (its initial images drawn as
    ``backwork`` draws them), for benchmarks and tests of the step itself."""
    strategy = strategy or tf.distribute.get_strategy()
    act = activation_model(model, config.layer_names, from_logits=config.from_logits)
    names = act.layer_names
    image_shape = _image_shape(model, data)
    labels = np.asarray(config.labels, np.int64)
    references = references if references is not None else reference_set(model, data, config)
    rngs = [np.random.default_rng([config.seed, int(lbl)]) for lbl in labels]
    init = np.concatenate(
        [
            _initial_images(data, config, int(lbl), (config.num_examples, *image_shape), rng)
            for lbl, rng in zip(labels, rngs)
        ]
    )
    coeffs = config.coeffs_for(len(names))
    return _Engine(
        act, names, coeffs, config, references, labels, config.num_examples, init, strategy
    )


class _LoopState:
    """What the host keeps between steps: the latest values, the per-label flags and counts,
    the decline windows and the history."""

    def __init__(self, config, labels, per, image_shape, init, num_classes, callbacks):
        num_labels = len(labels)
        self.config, self.labels, self.per = config, labels, per
        self.shape = (num_labels, per, *image_shape)
        self.callbacks = callbacks
        self.label_of_row = np.repeat(np.arange(num_labels), per)
        self.active = np.ones(num_labels, bool)
        self.converged = np.zeros(num_labels, bool)
        self.label_steps = np.zeros(num_labels, np.int64)
        self.reinits = np.zeros(num_labels, np.int64)
        self.prev_cost = np.full(num_labels, np.nan)
        self.tracker = _Tracker(num_labels * per, config.num_mono_dec_saves)
        self.history = _History(config.history_every, config.max_history)
        self.images = init.reshape(self.shape)
        self.probs = np.zeros((num_labels, per, num_classes), np.float32)
        self.cost = np.zeros(num_labels, np.float32)
        self.terms: dict = {}
        self.step = 0
        self.interrupted = False

    @property
    def active_rows(self) -> np.ndarray:
        """``[rows]`` whether each row's label is still being optimised."""
        return self.active[self.label_of_row]

    def observe(self, engine):
        """Computes the cost, probabilities and gradient of the current images."""
        grad, self.cost, self.terms, self.probs = engine.compute(self.active)
        self.images = engine.images().reshape(self.shape)
        return grad

    def save(self, test_caps: bool, test_tolerance: bool) -> np.ndarray:
        """A save: history, convergence tests, decline windows, callbacks.

        Returns:
            ``[rows]`` the rows to re-initialise.
        """
        c = self.config
        target = target_probabilities(self.probs, self.labels)
        self.history.add(self.step, self.images, self.probs)
        if test_caps:
            reached = (target.min(axis=1) > c.prob_cap_min) | (
                target.mean(axis=1) > c.prob_cap_mean
            )
            self.converged |= self.active & reached
            self.active &= ~reached
        self.test_tolerance(test_tolerance)
        rows = self.active_rows
        self.tracker.push(target.reshape(-1), rows)
        reinit = self.tracker.declining(c.reinit_below) & rows
        event = SaveEvent(
            self.step,
            self.labels,
            target,
            self.cost,
            self.terms,
            self.reinits.copy(),
            self.active.copy(),
            self.images,
        )
        for cb in self.callbacks:
            cb.on_save(event)
        return reinit

    def test_tolerance(self, test: bool = True) -> None:
        """Stops the labels whose cost changed by less than ``tolerance`` since the last
        call (when ``test``), then remembers the active labels' costs."""
        if test and self.config.tolerance > 0:
            flat = np.abs(self.cost - self.prev_cost) < self.config.tolerance
            self.active &= ~flat
        self.prev_cost = np.where(self.active, self.cost, self.prev_cost)

    def reinitialised(self, rows: np.ndarray) -> None:
        """Clears the windows of re-initialised rows and counts them."""
        self.tracker.clear(rows)
        np.add.at(self.reinits, self.label_of_row[rows], 1)

    def stepped(self) -> None:
        """Counts one optimisation step of the active labels."""
        self.label_steps += self.active
        self.step += 1

    def result(self, names, wall_time: float) -> BackworkResult:
        h_steps, h_images, h_probs = self.history.arrays(self.shape, self.probs.shape)
        return BackworkResult(
            labels=self.labels,
            images=self.images,
            probabilities=self.probs,
            history_steps=h_steps,
            history_images=h_images,
            history_probs=h_probs,
            steps=self.step,
            label_steps=self.label_steps,
            reinits=self.reinits,
            converged=self.converged,
            cost=self.cost,
            cost_terms=self.terms,
            layer_names=tuple(names),
            wall_time=wall_time,
            interrupted=self.interrupted,
        )


def _tfool_loop(engine, state: _LoopState, config: BackworkConfig, rngs) -> None:
    """Save (the initial noise included), test, then step; Adam restarts on re-initialised
    rows, which skip that step."""
    while True:
        interrupts.check()  # Ctrl-C / SIGTERM land here, between steps
        grad = state.observe(engine)
        reinit = np.zeros_like(state.active_rows)
        if state.step % config.save_freq == 0:
            late = state.step >= config.min_num_steps
            reinit = state.save(test_caps=late, test_tolerance=late)
        if not state.active.any() or state.step >= config.max_num_steps:
            return
        engine.apply(grad, state.active_rows & ~reinit)
        if reinit.any():
            engine.reinitialise(reinit, state.label_of_row, rngs, reset_adam=True)
            state.reinitialised(reinit)
        state.stepped()


def _original_loop(engine, state: _LoopState, config: BackworkConfig, rngs) -> None:
    """The original program's order, per label: an Adam step, then evaluate; every
    ``save_freq`` steps (and after the last) a save with its tests and re-initialisations
    (Adam's moments and step count kept); the tolerance tested after every step. The
    initial noise is never saved."""
    grad = state.observe(engine)
    state.prev_cost = np.full(len(state.labels), np.inf)
    while state.active.any() and state.step < config.max_num_steps:
        interrupts.check()
        engine.apply(grad, state.active_rows)
        state.stepped()
        done = state.step - 1  # the original's loop counter
        grad = state.observe(engine)
        reinit = np.zeros_like(state.active_rows)
        if done % config.save_freq == 0 or state.step == config.max_num_steps:
            reinit = state.save(test_caps=done >= config.min_num_steps, test_tolerance=False)
        if reinit.any():
            engine.reinitialise(reinit, state.label_of_row, rngs, reset_adam=False)
            state.reinitialised(reinit)
        state.test_tolerance(done >= config.min_num_steps)
        if reinit.any():  # the next step starts from the new noise
            grad = state.observe(engine)


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


_ARRAY_FIELDS = (
    "labels",
    "images",
    "probabilities",
    "history_steps",
    "history_images",
    "history_probs",
    "label_steps",
    "reinits",
    "converged",
    "cost",
)


def result_arrays(result: BackworkResult) -> dict[str, np.ndarray]:
    """The arrays of a result, for ``tfool.io.write_npz`` (``images.npz``)."""
    arrays = {name: np.asarray(getattr(result, name)) for name in _ARRAY_FIELDS}
    for key, value in result.cost_terms.items():
        arrays[f"cost_{key}"] = np.asarray(value)
    arrays["layer_names"] = np.asarray(result.layer_names)
    arrays["meta"] = np.asarray([result.steps, result.wall_time, float(result.interrupted)])
    return arrays


def load_result(path) -> BackworkResult:
    """Reloads a result written as ``images.npz``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is damaged, not an npz archive, lacks arrays of a backworking
            result or holds arrays of inconsistent shapes (the message names the file).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no backworking result at {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, expected an images.npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        missing = [k for k in (*_ARRAY_FIELDS, "meta", "layer_names") if k not in arrays]
        if not missing:
            steps, wall, interrupted = arrays["meta"]
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
        reason = "not an npz archive of arrays" if "pickle" in str(err) else str(err)
        raise ValueError(f"{path} is not a readable backworking result: {reason}") from err
    if missing:
        raise ValueError(f"{path} is not a backworking result: missing arrays {missing}")
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim != 5 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"{path} is not a backworking result: images of shape {images.shape} for "
            f"labels of shape {labels.shape} (expected [L, E, H, W, C] and [L])"
        )
    terms = {k[5:]: arrays[k] for k in arrays if k.startswith("cost_")}
    return BackworkResult(
        **{k: arrays[k] for k in _ARRAY_FIELDS if k != "steps"},
        steps=int(steps),
        cost_terms=terms,
        layer_names=tuple(str(n) for n in arrays["layer_names"]),
        wall_time=float(wall),
        interrupted=bool(interrupted),
    )


class _Engine:
    """The compiled part of backworking: cost, gradient and the per-row Adam update.

    Without a strategy (or with one replica) one compiled step covers the whole batch.
    Under a strategy with several replicas the rows are split across replicas by label
    group: each replica holds only its labels' reference activations (sharded, so memory
    per device shrinks with the replica count) and computes the reference costs of the
    rows it owns. The batch cost pairs rows of the same label only, so every row it needs
    lives on the same replica; the gradients, probabilities and cost terms are then
    all-reduced, so every replica (and every worker of a multi-worker strategy) holds the
    whole batch's values, the host takes each convergence and re-initialisation decision
    once, and the identical Adam update is applied to every copy of the mirrored inputs.
    Label groups are padded to a multiple of the replica count with weightless copies of
    the last group, whose rows are never updated or reported.
    """

    def __init__(self, act, names, coeffs, config, references, labels, per, init, strategy):
        self.config, self.per, self.strategy = config, per, strategy
        self.num_labels = len(labels)
        self.replicas = strategy.num_replicas_in_sync
        self.groups = -(-self.num_labels // self.replicas)  # label groups per replica
        padded = self.groups * self.replicas
        pad = padded - self.num_labels
        self.image_shape = tuple(init.shape[1:])
        labels = np.concatenate([labels, np.repeat(labels[-1:], pad)])
        weights = np.concatenate([np.ones(self.num_labels), np.zeros(pad)]).astype(np.float32)
        init = np.concatenate([init, np.repeat(init[-per:], pad, axis=0)]) if pad else init
        self.rows = len(init)
        with strategy.scope():
            self.x = tf.Variable(init, name="backwork_inputs")
            self.m = tf.Variable(tf.zeros_like(init), name="adam_m")
            self.v = tf.Variable(tf.zeros_like(init), name="adam_v")
            self.t = tf.Variable(tf.zeros([self.rows], tf.float32), name="adam_t")

        def cost_of(images, refs_r, norms_r, labels_r, weights_r, groups, transposed=False):
            out = act(images, training=False)
            grouped = [tf.reshape(out[n], (groups, per, *out[n].shape[1:])) for n in names]
            cost, terms = costs.total_cost(
                grouped,
                refs_r,
                norms_r,
                labels_r,
                coeffs,
                config.reference_cost_coeff,
                config.batch_cost_coeff,
                config.softmax_cost,
                config.chunk_size,
                transposed,
                per_unit=references.per_unit,
                self_pairs=config.semantics == "original",
            )
            return cost, terms, grouped[-1], tf.reduce_sum(cost * weights_r)

        self._cost_of = cost_of
        self._refs = references
        self._labels = np.asarray(labels[: self.num_labels])
        self._steps: dict[int, Any] = {}  # bucket -> compiled step
        self.traces = 0  # compiled steps made (one per bucket of running labels)
        self._computed = np.arange(self.rows)  # rows the last gradient covers
        self._last: tuple | None = None  # the last cost, terms and probabilities, all labels
        if self.replicas == 1:
            self._compute = None
            self._apply_rows = tf.function(
                self._adam_rows,
                jit_compile=config.jit_compile,
                input_signature=[
                    tf.TensorSpec([None, *self.image_shape], tf.float32),
                    tf.TensorSpec([None], tf.int32),
                ],
            )
        else:
            self._compute = self._distributed_compute(cost_of, references, labels, weights)
        self._apply = tf.function(
            self._adam, jit_compile=config.jit_compile and self.replicas == 1, reduce_retracing=True
        )

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
        """The compiled step over ``bucket`` labels (made once; shapes of the reference
        sets left open, so any labels of that count reuse it)."""
        if bucket in self._steps:
            return self._steps[bucket]
        refs = self._refs
        ref_specs = []
        for k, layer in enumerate(refs.activations):
            dim = int(layer[0].shape[0] if self._columns(k) else layer[0].shape[1])
            shape = [dim, None] if self._columns(k) else [None, dim]
            ref_specs.append([tf.TensorSpec(shape, layer[0].dtype)] * bucket)
        norm_specs = [[tf.TensorSpec([None], tf.float32)] * bucket for _ in refs.sq_norms]
        per, config, cost_of = self.per, self.config, self._cost_of

        # The reference tensors are arguments, never copied nor captured: TensorFlow keeps
        # a traced function's captures alive after the function is gone, which held every
        # run's reference set (GBs on full MNIST) until the process ended.
        @tf.function(
            jit_compile=config.jit_compile,
            input_signature=[
                tf.TensorSpec([bucket * per], tf.int32),
                ref_specs,
                norm_specs,
                tf.TensorSpec([bucket], tf.int64),
                tf.TensorSpec([bucket], tf.float32),
            ],
        )
        def step(rows, refs_r, norms_r, labels_r, weights_r):
            images = tf.gather(self.x, rows)
            with tf.GradientTape() as tape:
                tape.watch(images)
                cost, terms, probs, total = cost_of(
                    images, refs_r, norms_r, labels_r, weights_r, bucket, refs.transposed
                )
            return tape.gradient(total, images), cost, terms, probs

        self._steps[bucket] = step
        self.traces += 1
        return step

    def _compute_running(self, active: np.ndarray):
        """Cost, terms, probabilities and gradient of the running labels only; the bucket
        is filled with weightless groups that read one reference image each."""
        running = np.flatnonzero(active)
        if not len(running):
            running = np.arange(self.num_labels)[:1]
        bucket = self._bucket(len(running))
        pad = bucket - len(running)
        fill = running[0]
        refs = self._refs

        acts = []
        for k, layer in enumerate(refs.activations):
            small = layer[fill][:, :1] if self._columns(k) else layer[fill][:1]
            acts.append([layer[i] for i in running] + [small] * pad)
        norms = [[layer[i] for i in running] + [layer[fill][:1]] * pad for layer in refs.sq_norms]
        groups = np.concatenate([running, np.full(pad, fill)])
        rows = (groups[:, None] * self.per + np.arange(self.per)).reshape(-1).astype(np.int32)
        weights = np.concatenate([np.ones(len(running)), np.zeros(pad)]).astype(np.float32)
        grad, cost, terms, probs = self._step_for(bucket)(
            tf.constant(rows),
            acts,
            norms,
            tf.constant(self._labels[groups].astype(np.int64)),
            tf.constant(weights),
        )
        n = len(running)
        self._computed = rows[: n * self.per]
        return grad[: n * self.per], running, cost.numpy()[:n], terms, probs.numpy()[:n]

    def _merge(self, running, cost, terms, probs):
        """The latest values of every label: the running ones just computed, the frozen
        ones as they were when they stopped (their images have not changed since)."""
        n = len(running)
        if self._last is None:
            self._last = (
                np.zeros(self.num_labels, np.float32),
                {
                    k: np.zeros((v.shape[0], self.num_labels), np.float32)
                    if v.shape.rank == 2
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
            val = val.numpy()
            if val.ndim == 2:
                last_terms[k][:, running] = val[:, :n]
            else:
                last_terms[k][running] = val[:n]
        self._last = (last_cost, last_terms, last_probs)
        return last_cost, last_terms, last_probs

    def _distributed_compute(self, cost_of, references, labels, weights):
        strategy, groups, per = self.strategy, self.groups, self.per
        rows_here, total_rows = groups * per, self.rows
        total_groups = groups * self.replicas
        last = self.num_labels - 1

        def shard(array):
            return strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(array[ctx.replica_id_in_sync_group * groups :][:groups])
            )

        def shard_layer(k):
            """Each replica's labels of layer ``k``, padded ``[groups, N_max, D]``."""
            stacks = []
            for r in range(self.replicas):
                pos = [min(r * groups + j, last) for j in range(groups)]
                stacks.append(references.padded(k, pos))
            acts = strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(stacks[ctx.replica_id_in_sync_group][0])
            )
            norms = strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(stacks[ctx.replica_id_in_sync_group][1])
            )
            return acts, norms

        layers = [shard_layer(k) for k in range(len(references.layer_names))]
        sharded = (
            [a for a, _ in layers],
            [n for _, n in layers],
            shard(labels),
            shard(weights),
        )

        def place(value, start, total, axis=0):
            """Zero-pads a replica's slice to the whole batch along ``axis``."""
            paddings = [[0, 0]] * value.shape.rank
            size = tf.shape(value)[axis]
            paddings[axis] = [start, total - start - size]
            return tf.pad(value, paddings)

        def replica_step(refs_r, norms_r, labels_r, weights_r):
            ctx = tf.distribute.get_replica_context()
            rid = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
            start = rid * rows_here
            images = tf.slice(
                tf.convert_to_tensor(self.x),
                [start] + [0] * len(self.image_shape),
                [rows_here, *self.image_shape],
            )
            with tf.GradientTape() as tape:
                tape.watch(images)
                cost, terms, probs, total = cost_of(
                    images, refs_r, norms_r, labels_r, weights_r, groups
                )
            grad = tape.gradient(total, images)
            g0 = rid * groups
            parts = [
                place(grad, start, total_rows),
                place(cost, g0, total_groups),
                place(probs, g0, total_groups),
                *(place(terms[k], g0, total_groups, axis=1) for k in ("reference", "batch")),
                place(terms["softmax"], g0, total_groups),
            ]
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM, parts)

        @tf.function(reduce_retracing=True)
        def compute():
            out = strategy.run(replica_step, args=sharded)
            grad, cost, probs, ref_t, batch_t, soft_t = (
                strategy.experimental_local_results(o)[0] for o in out
            )
            return grad, cost, {"reference": ref_t, "batch": batch_t, "softmax": soft_t}, probs

        return compute

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
        """Cost terms, probabilities (NumPy, real labels only) and the gradient (a tensor).

        On one device only the ``active`` labels (all when ``None``) are computed: their
        rows through the model, their reference sets read; the others keep the values
        they had when they stopped. Under several replicas every label is computed.
        """
        if active is None:
            active = np.ones(self.num_labels, bool)
        if self._compute is None:
            grad, running, cost, terms, probs = self._compute_running(np.asarray(active))
            cost, terms, probs = self._merge(running, cost, terms, probs)
            return grad, cost, terms, probs
        grad, cost, terms, probs = self._compute()
        n = self.num_labels
        terms_np = {
            k: (val.numpy()[:, :n] if val.shape.rank == 2 else val.numpy()[:n])
            for k, val in terms.items()
        }
        return grad, cost.numpy()[:n], terms_np, probs.numpy()[:n]

    def images(self) -> np.ndarray:
        """The current images of the real rows."""
        return self.x.numpy()[: self.num_labels * self.per]

    def apply(self, grad, row_mask: np.ndarray) -> None:
        """One Adam step on the rows of ``row_mask`` (real rows; padding rows never move)
        that the last ``compute`` covered."""
        if self._compute is None:
            chosen = np.flatnonzero(np.asarray(row_mask)[self._computed])
            if len(chosen):
                rows = self._computed[chosen]
                self._apply_rows(tf.gather(grad, chosen), tf.constant(rows, tf.int32))
            return
        full = np.zeros(self.rows, np.float32)
        full[: len(row_mask)] = row_mask
        self._apply(grad, tf.constant(full))

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


# The analysis of a result lives in tfool.analysis; re-exported for notebooks and scripts
# that reach it through this module.
from tfool.analysis import (  # noqa: E402, F401
    image_distances,
    layer_distances,
    summarize,
    worst_classified,
)
