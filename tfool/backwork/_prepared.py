"""What a backworking run prepares once: the activation model, the exposed layers, their
weights, the checked inputs and the reference sets, shared by ``estimate_memory``,
``backwork`` and the report."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np

from tfool import _tf, classifier
from tfool.backwork._config import BackworkConfig
from tfool.data import Dataset
from tfool.references import ReferenceSet, build_reference_set


@dataclasses.dataclass(frozen=True, eq=False)
class Prepared:
    """A run's model read once: build it with ``prepare`` and pass it to
    ``estimate_memory``, ``backwork`` and ``tfool.analysis.analyse_backwork``.

    Attributes:
        model: The classifier.
        data: Its training data (``None``: only the probabilities exposed).
        config: The run's settings.
        act: ``tfool.classifier.activation_model`` of the model: the exposed layers.
        layer_names: The exposed layers, the class probabilities last.
        coeffs: The weight of every exposed layer (``config.coeffs_for``).
        image_shape: The shape of one input image.
        num_classes: The model's class count.
        references: The reference set (``None`` until ``with_references``).
    """

    model: keras.Model
    data: Dataset | None
    config: BackworkConfig
    act: keras.Model
    layer_names: tuple[str, ...]
    coeffs: tuple[float, ...]
    image_shape: tuple[int, ...]
    num_classes: int
    references: ReferenceSet | None = None

    def with_references(self, references: ReferenceSet | None = None) -> Prepared:
        """This preparation with its reference set: ``references`` checked against the
        run (a set of other layers, labels or semantics is refused), or built here once.

        Raises:
            ValueError: ``references`` of other layers, labels or semantics.
        """
        if references is not None:
            refs = _check_references(references, self.config, self.act)
        elif self.references is not None:
            return self
        elif len(self.layer_names) == 1:
            refs = ReferenceSet(tuple(self.config.labels), (), (), (), self.config.reference_dtype)
        else:
            refs = build_reference_set(
                self.act,
                self.data,
                self.config.labels,
                self.config.reference_size,
                self.config.reference_dtype,
                per_unit_layers=_per_unit_layers(self.act, self.config),
            )
        return dataclasses.replace(self, references=refs)

    def check(self, model: keras.Model, data: Dataset | None, config: BackworkConfig) -> None:
        """Refuses a preparation made for another model, data or config.

        Raises:
            ValueError: it was prepared for another model, data or config.
        """
        if model is not self.model or data is not self.data or config != self.config:
            raise ValueError(
                "prepared was made for another model, data or config: build it with "
                "prepare(model, data, config) for this run"
            )


def prepare(
    model: keras.Model,
    data: Dataset | None,
    config: BackworkConfig = BackworkConfig(),
    references: ReferenceSet | None = None,
    build_references: bool = False,
) -> Prepared:
    """Reads the model once for a backworking run: its exposed layers, their weights, the
    image shape and class count, checked against the data and config.

    Args:
        model: The classifier.
        data: Its training data (``None``: only the probabilities exposed).
        config: The run's settings.
        references: A reference set to use (checked against the run).
        build_references: Build the reference set now (else ``with_references`` does).

    Returns:
        A ``Prepared``.

    Raises:
        ValueError: as ``backwork`` for bad labels, data or layer weights.
    """
    act = classifier.activation_model(model, config.layer_names, from_logits=config.from_logits)
    names = act.layer_names
    coeffs = config.coeffs_for(len(names))
    _check_inputs(model, data, config, names, coeffs)
    prepared = Prepared(
        model,
        data,
        config,
        act,
        tuple(names),
        tuple(coeffs),
        _image_shape(model, data),
        _tf.num_classes(model),
    )
    if references is not None or build_references:
        return prepared.with_references(references)
    return prepared


def reference_set(
    model: keras.Model,
    data: Dataset | None,
    config: BackworkConfig = BackworkConfig(),
) -> ReferenceSet:
    """The reference set a run with ``config`` uses: build it once, pass it to ``backwork``
    and ``layer_distances`` so the activations are held once (``prepare(...,
    build_references=True)`` keeps it with the rest of the run's preparation).

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
    return prepare(model, data, config, build_references=True).references


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


def initial_batch(
    data: Dataset | None, config: BackworkConfig, image_shape: Sequence[int]
) -> tuple[np.ndarray, list[np.random.Generator]]:
    """The initial images ``[rows, *image_shape]`` of a run (``config.init``, one seeded
    noise stream per label) and those streams, which re-initialisations go on drawing."""
    labels = np.asarray(config.labels, np.int64)
    rngs = [np.random.default_rng([config.seed, int(lbl)]) for lbl in labels]
    shape = (config.num_examples, *image_shape)
    init = np.concatenate(
        [_initial_images(data, config, int(lbl), shape, rng) for lbl, rng in zip(labels, rngs)]
    )
    return init, rngs


def _initial_images(data: Dataset, config: BackworkConfig, label: int, shape, rng) -> np.ndarray:
    if config.init == "uniform":
        return rng.uniform(config.input_min, config.input_max, size=shape).astype(np.float32)
    x = data.train_of_class(label)
    x = x[rng.permutation(len(x))]
    groups = np.array_split(x, shape[0])
    means = [g.mean(axis=0) if len(g) else rng.uniform(0, 1, shape[1:]) for g in groups]
    return np.stack(means).astype(np.float32)
