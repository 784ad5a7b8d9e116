"""Retraining with backworked negatives: rounds of backwork, augment, retrain and measure."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfool import _tf, attacks, classifier, interrupts, io, models
from tfool.adversarial import AdversarialTraining
from tfool.backwork import (
    BackworkCallback,
    BackworkConfig,
    BackworkResult,
    SaveEvent,
    backwork,
    load_result,
    reference_set,
    result_arrays,
)
from tfool.data import Dataset, ImageClassSet

logger = logging.getLogger(__name__)

#: ``uniform`` and ``extra_class`` add the negatives; ``control`` adds nothing (the same
#: rounds, epochs and seeds), so what differs from it is the negatives' doing;
#: ``adversarial`` adds nothing either but trains on every batch's FGSM/PGD images
#: (``tfool.adversarial``), the defence the adversarial-examples literature trusts.
MODES = ("uniform", "extra_class", "control", "adversarial")


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """How ``retrain_rounds`` retrains and what every round measures.

    Attributes:
        rounds: Retraining rounds after round 0 (the measured starting model); 0 runs none.
        mode: ``uniform`` targets for the negatives (the MNIST post), an ``extra_class``
            (Nguyen et al.), ``control``: the same rounds with nothing added, or
            ``adversarial``: nothing added, every round trained adversarially
            (``adversarial_*``).
        from_scratch: Train a freshly initialised model every round instead of going on
            from the previous round's weights.
        resume: Continue the rounds finished in the output folder, which must have been
            made with the same settings, weights and data (``check_folder``); without it a
            folder with finished rounds is refused.
        epochs: Training epochs per round (``None``: the training config's).
        num_zero: All-zero images added every round (not in ``control`` mode).
        num_noise: Uniform-noise images added every round (not in ``control`` mode).
        max_num_steps: Step limit of every round's backwork run, the smaller of this and
            the backworking config's (``None``: the backworking config's).
        fgsm_eps: FGSM steps (pixel range [0, 1]) whose test accuracy every round records.
        fooling_budget: Step budget of every round's fooling measurement.
        fooling_examples: Rows per label of the fooling measurement.
        fooling_seed: Seed of its initial noise (the same in every round and mode) and of
            the noise images whose confidence every round records.
        fooling_threshold: Target probability at which a row counts as fooled.
        num_noise_probe: Uniform-noise images whose top class probability is recorded.
        adversarial_eps: ``adversarial`` mode: the L-infinity radius of the training attack.
        adversarial_step: Its step size (Wong et al. 2020: ``1.25 * eps`` for one step).
        adversarial_steps: Its steps: 1 is FGSM from a random start, more is PGD.
        adversarial_epochs: ``adversarial`` mode: training epochs per round (``None``:
            ``epochs``).
    """

    rounds: int = 0
    mode: str = "uniform"
    from_scratch: bool = False
    resume: bool = False
    epochs: int | None = 2
    num_zero: int = 800
    num_noise: int = 800
    max_num_steps: int | None = 150
    fgsm_eps: tuple[float, ...] = (0.1, 0.25)
    fooling_budget: int = 100
    fooling_examples: int = 8
    fooling_seed: int = 1000
    fooling_threshold: float = 0.999
    num_noise_probe: int = 1000
    adversarial_eps: float = 0.3
    adversarial_step: float = 0.375
    adversarial_steps: int = 1
    adversarial_epochs: int | None = None

    def __post_init__(self):
        _check_mode(self.mode)
        self.adversarial_training()  # checks the adversarial_* fields
        if int(self.rounds) != self.rounds or self.rounds < 0:
            raise ValueError(f"rounds={self.rounds} must be an integer >= 0")
        eps = (self.fgsm_eps,) if np.isscalar(self.fgsm_eps) else tuple(self.fgsm_eps)
        if not eps or not all(_tf.is_finite_number(e) and 0 <= e <= 1 for e in eps):
            raise ValueError(f"fgsm_eps={self.fgsm_eps} must be one or more numbers in [0, 1]")
        object.__setattr__(self, "fgsm_eps", tuple(float(e) for e in eps))
        if not (_tf.is_finite_number(self.fooling_threshold) and 0 < self.fooling_threshold < 1):
            raise ValueError(
                f"fooling_threshold={self.fooling_threshold} must be a number in (0, 1)"
            )
        for name in ("num_zero", "num_noise", "fooling_seed"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(f"{name}={value} must be an integer >= 0")
        for name in ("fooling_budget", "fooling_examples", "num_noise_probe"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name}={value} must be an integer >= 1")
        for name in ("epochs", "max_num_steps", "adversarial_epochs"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name}={value} must be an integer >= 1 or None")

    def adversarial_training(self) -> AdversarialTraining:
        """The training attack of ``adversarial`` mode (``adversarial_*``)."""
        return AdversarialTraining(
            eps=self.adversarial_eps, step_size=self.adversarial_step, steps=self.adversarial_steps
        )

    def adversary(self) -> AdversarialTraining | None:
        """What ``models.train`` gets as ``adversary`` in this mode (``None`` but in
        ``adversarial`` mode)."""
        return self.adversarial_training() if self.mode == "adversarial" else None

    def round_configs(
        self, backwork_config: BackworkConfig, train_config: models.TrainConfig
    ) -> tuple[BackworkConfig, models.TrainConfig]:
        """The backworking and training settings every round uses."""
        if self.max_num_steps is not None:
            steps = min(backwork_config.max_num_steps, self.max_num_steps)
            backwork_config = dataclasses.replace(backwork_config, max_num_steps=steps)
        epochs = self.epochs
        if self.mode == "adversarial" and self.adversarial_epochs is not None:
            epochs = self.adversarial_epochs
        if epochs is not None:
            train_config = dataclasses.replace(train_config, epochs=epochs)
        return backwork_config, train_config


#: ``AugmentedData.origin`` codes: where each training row came from.
ORIGIN_DATA, ORIGIN_NEGATIVE, ORIGIN_ZERO, ORIGIN_NOISE = 0, 1, 2, 3
NEGATIVE_CLASS_NAME = "negative"
STATE_FILE = "state.json"
#: Training of every round: two epochs from the previous round's weights, else as usual.
DEFAULT_TRAIN_CONFIG = models.TrainConfig(epochs=2)


def negative_class_name(class_names: Sequence[str]) -> str:
    """The name of the extra class: ``NEGATIVE_CLASS_NAME``, or with ``_`` appended until
    it differs from every class name of the data (which may have a class "negative")."""
    name = NEGATIVE_CLASS_NAME
    while name in class_names:
        name += "_"
    return name


@dataclasses.dataclass(frozen=True, eq=False)
class AugmentedData(ImageClassSet):
    """A training set with soft targets: the data plus negatives, zero and noise images.

    It has the fields ``tfool.models.train`` reads (``x_train, y_train, x_test, y_test``);
    ``y_train`` holds one target distribution per row, so training uses categorical
    cross-entropy.

    Attributes:
        x_train: float32 images ``[N, H, W, C]``, shuffled.
        y_train: float32 targets ``[N, K]``, each row summing to 1 (``K`` is the data's
            classes, plus one in ``extra_class`` mode).
        x_test: The data's test images (a copy).
        y_test: The data's int64 test labels (a copy).
        class_names: ``K`` names (``negative`` last in ``extra_class`` mode).
        source: The data's source.
        name: The data's name.
        mode: ``uniform`` or ``extra_class``.
        origin: int8 ``[N]``: ``ORIGIN_DATA``, ``ORIGIN_NEGATIVE``, ``ORIGIN_ZERO`` or
            ``ORIGIN_NOISE`` per row.
        seed: The seed of the noise images and of the shuffle.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    name: str
    mode: str
    origin: np.ndarray
    seed: int

    @property
    def hard_labels(self) -> np.ndarray:
        """int64 ``[N]``: the class of one-hot rows, -1 for uniform (soft) rows."""
        one_hot = self.y_train.max(axis=1) == 1.0
        return np.where(one_hot, self.y_train.argmax(axis=1), -1).astype(np.int64)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {MODES}")


def _check_dataset(data) -> None:
    if not isinstance(data, Dataset):
        raise ValueError(
            f"data is a {type(data).__name__}, expected a tfool.data.Dataset with integer labels"
        )


def augment_with_negatives(
    data: Dataset,
    negatives: np.ndarray,
    mode: str = "uniform",
    num_zero: int = 800,
    num_noise: int = 800,
    seed: int = 0,
) -> AugmentedData:
    """The training set plus negatives, all-zero and uniform-noise images, shuffled.

    ``uniform`` (the MNIST post): every added image gets the uniform target ``1/C`` over
    the ``C`` classes. ``extra_class`` (Nguyen et al. 2015): every added image is labelled
    with a new class ``C``; the targets have ``C + 1`` columns. ``control`` and
    ``adversarial``: nothing is added (the negatives are checked, then left out). The data's own images keep one-hot
    targets and, for a given seed, the same order among themselves in every mode (the
    added rows are interleaved). Nothing of ``data`` or ``negatives`` is modified.

    Args:
        data: The original dataset (integer labels).
        negatives: Backworked images ``[M, H, W, C]`` or ``[L, E, H, W, C]`` (a
            ``BackworkResult.images``); ``M`` may be 0.
        mode: ``uniform``, ``extra_class``, ``control`` or ``adversarial``.
        num_zero: All-zero images to add, >= 0.
        num_noise: Uniform-noise images in [0, 1] to add, >= 0.
        seed: Seed of the noise images and of the shuffle (``np.random.default_rng``).

    Returns:
        A new ``AugmentedData``.

    Raises:
        ValueError: an unknown mode, a negative count, a dataset that is not a ``Dataset``,
            negatives of another image shape or with non-finite pixels.
    """
    _check_mode(mode)
    _check_dataset(data)
    for name, value in (("num_zero", num_zero), ("num_noise", num_noise)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name}={value} must be an integer >= 0")
    shape = data.image_shape
    negatives = np.asarray(negatives, np.float32)
    if negatives.ndim < len(shape) or tuple(negatives.shape[-len(shape) :]) != shape:
        raise ValueError(
            f"negatives have shape {negatives.shape}, expected [M, {', '.join(map(str, shape))}]"
            " or [L, E, ...] images of the data's shape"
        )
    negatives = negatives.reshape(-1, *shape)
    if not np.all(np.isfinite(negatives)):
        raise ValueError("negatives contain non-finite pixels (nan or inf)")
    if mode in ("control", "adversarial"):
        negatives, num_zero, num_noise = negatives[:0], 0, 0

    rng, order_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 0])
    num_classes = data.num_classes
    width = num_classes + (mode == "extra_class")
    added = np.concatenate(
        [
            negatives,
            np.zeros((int(num_zero), *shape), np.float32),
            rng.uniform(0.0, 1.0, size=(int(num_noise), *shape)).astype(np.float32),
        ]
    )
    added_target = np.zeros(width, np.float32)
    if mode == "uniform":
        added_target[:] = 1.0 / num_classes
    elif mode == "extra_class":
        added_target[num_classes] = 1.0
    x = np.concatenate([data.x_train, added])
    y = np.concatenate(
        [
            np.eye(width, dtype=np.float32)[data.y_train],
            np.broadcast_to(added_target, (len(added), width)),
        ]
    )
    origin = np.concatenate(
        [
            np.full(len(data.x_train), ORIGIN_DATA, np.int8),
            np.full(len(negatives), ORIGIN_NEGATIVE, np.int8),
            np.full(int(num_zero), ORIGIN_ZERO, np.int8),
            np.full(int(num_noise), ORIGIN_NOISE, np.int8),
        ]
    )
    # Sort keys: the data rows' keys come first from their own stream, so their order
    # among themselves does not depend on how many rows are added.
    keys = np.concatenate([order_rng.random(len(data.x_train)), order_rng.random(len(added))])
    order = np.argsort(keys, kind="stable")
    extra = (negative_class_name(data.class_names),) if mode == "extra_class" else ()
    names = tuple(data.class_names) + extra
    return AugmentedData(
        x_train=x[order],
        y_train=y[order],
        x_test=data.x_test.copy(),
        y_test=data.y_test.copy(),
        class_names=names,
        source=data.source,
        name=data.name,
        mode=mode,
        origin=origin[order],
        seed=int(seed),
    )


def _num_outputs(model: keras.Model) -> int:
    return int(model.outputs[0].shape[-1])


def copy_model(model: keras.Model, fresh: bool = False) -> keras.Model:
    """An independent copy of a Keras model (same architecture and names).

    Args:
        model: The model to copy.
        fresh: Re-initialise every weight with its layer's initialiser instead of copying.
    """
    clone = keras.models.clone_model(model)
    if not fresh:
        clone.set_weights(model.get_weights())
    return clone


def grow_output_layer(model: keras.Model, extra: int = 1) -> keras.Model:
    """A copy of a classifier with ``extra`` more output classes.

    Every layer's weights are copied; the last (``Dense``) layer gets ``extra`` new output
    units initialised by its own kernel and bias initialisers, while the old units keep
    their weights, so the old classes' logits are unchanged. The model is not modified.

    Args:
        model: A classifier whose last layer is a ``Dense`` layer producing its one output.
        extra: Classes to add, >= 1.

    Returns:
        A new ``keras.Model`` with ``C + extra`` outputs.

    Raises:
        ValueError: ``extra < 1``, several outputs, or a last layer that is not ``Dense``.
    """
    if int(extra) != extra or extra < 1:
        raise ValueError(f"extra={extra} must be an integer >= 1")
    last = model.layers[-1]
    if len(model.outputs) != 1 or not isinstance(last, keras.layers.Dense):
        raise ValueError(
            f"model {model.name!r} must have one output made by a Dense last layer to grow it; "
            f"its last layer {last.name!r} is a {type(last).__name__}"
        )
    old_units = int(last.units)

    def clone_layer(layer):
        config = layer.get_config()
        if layer is last:
            config["units"] = old_units + int(extra)
        return layer.__class__.from_config(config)

    grown = keras.models.clone_model(model, clone_function=clone_layer)
    for old, new in zip(model.layers, grown.layers):
        if old is last:
            weights = [w.copy() for w in new.get_weights()]
            for w_new, w_old in zip(weights, old.get_weights()):
                w_new[..., :old_units] = w_old
            new.set_weights(weights)
        else:
            new.set_weights(old.get_weights())
    return grown


@dataclasses.dataclass(frozen=True)
class NegativeConfidence:
    """How a round's model classifies the negatives of one earlier round.

    Attributes:
        round: The round whose backworked images these are.
        count: Images.
        mean_target_prob: Mean probability of the label each image was backworked for.
        max_target_prob: Its maximum.
        frac_at_cap: Fraction of images with target probability >= the backworking cap.
        mean_negative_prob: Mean probability of the extra class (``extra_class`` mode
            only, else ``None``).
    """

    round: int
    count: int
    mean_target_prob: float
    max_target_prob: float
    frac_at_cap: float
    mean_negative_prob: float | None = None


@dataclasses.dataclass(frozen=True)
class FoolingStats:
    """How easily a model is fooled from fresh noise within a fixed step budget.

    Attributes:
        rows: Rows optimised (labels times examples).
        budget: The step budget.
        threshold: The target probability at which a row counts as fooled.
        rate: Fraction of rows whose target label reached ``threshold`` within the budget.
        median_steps: Median steps those rows took (``None`` when none did).
        mean_target_prob: Mean target probability of the rows at the end.
        seconds: Wall time.
        interrupted: Whether Ctrl-C stopped the measurement.
    """

    rows: int
    budget: int
    threshold: float
    rate: float
    median_steps: float | None
    mean_target_prob: float
    seconds: float
    interrupted: bool = False


class _FirstReach(BackworkCallback):
    """Remembers the first step at which each row's target probability reached a threshold."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.first: np.ndarray | None = None

    def on_save(self, event: SaveEvent) -> None:
        target = np.asarray(event.target_probs)
        if self.first is None:
            self.first = np.full(target.shape, -1, np.int64)
        newly = (target >= self.threshold) & (self.first < 0)
        self.first[newly] = event.step


def fooling_config(backwork_config: BackworkConfig, config: RetrainConfig) -> BackworkConfig:
    """The backworking settings of ``measure_fooling``: ``backwork_config``'s costs and
    re-initialisation, ``config.fooling_examples`` rows per label from noise seeded by
    ``config.fooling_seed``, at most ``config.fooling_budget`` steps, a save (and so a test)
    after every step, and a label stopping only when all its rows are past
    ``config.fooling_threshold``. With one row per label there is no batch to keep
    diverse, so the batch cost is off (it needs two rows)."""
    one_row = config.fooling_examples < 2
    return dataclasses.replace(
        backwork_config,
        num_examples=config.fooling_examples,
        batch_cost_coeff=0.0 if one_row else backwork_config.batch_cost_coeff,
        max_num_steps=config.fooling_budget,
        seed=config.fooling_seed,
        save_freq=1,
        prob_cap_min=config.fooling_threshold,
        prob_cap_mean=1.0,
        tolerance=0.0,
        history_every=config.fooling_budget,
        max_history=2,
    )


def measure_fooling(
    model: keras.Model,
    data: Dataset,
    backwork_config: BackworkConfig,
    config: RetrainConfig = RetrainConfig(),
    *,
    references=None,
    strategy: tf.distribute.Strategy | None = None,
) -> FoolingStats:
    """Backworks fresh noise (a fixed seed) against ``model`` within a step budget and
    counts the rows whose target probability reaches the threshold.

    With an extra output class the target class's probability counts, not the extra
    class's.

    Args:
        model: The classifier (logits).
        data: Its training data (the reference sets) or ``None`` when the config needs none.
        backwork_config: The backworking settings (labels, costs, learning rate).
        config: Its ``fooling_*`` fields set the budget, rows, seed and threshold (the run's
            settings are ``fooling_config(backwork_config, config)``).
        references: A ``ReferenceSet`` built for ``model`` (``None``: built here).
        strategy: Optional ``tf.distribute`` strategy.

    Returns:
        A ``FoolingStats``.
    """
    threshold = config.fooling_threshold
    reach = _FirstReach(threshold)
    run_config = fooling_config(backwork_config, config)
    result = backwork(model, data, run_config, strategy, [reach], references=references)
    first = reach.first if reach.first is not None else np.full(result.target_probs.shape, -1)
    fooled = first >= 0
    return FoolingStats(
        rows=int(first.size),
        budget=int(config.fooling_budget),
        threshold=float(threshold),
        rate=float(fooled.mean()),
        median_steps=float(np.median(first[fooled])) if fooled.any() else None,
        mean_target_prob=float(result.target_probs.mean()),
        seconds=float(result.wall_time),
        interrupted=bool(result.interrupted),
    )


def top_digit_confidence(
    model: keras.Model, images: np.ndarray, num_classes: int, strategy=None
) -> float:
    """Mean over ``images`` of the largest probability among the first ``num_classes``
    classes (the data's classes: an extra negative class is left out)."""
    probs = attacks.probabilities(model, images, strategy=strategy)
    return float(probs[:, :num_classes].max(axis=1).mean())


@dataclasses.dataclass(frozen=True)
class RoundRecord:
    """What one round measured. Round 0 is the model given to ``retrain_rounds``.

    Attributes:
        round: 0 for the input model, then 1, 2, ...
        test_accuracy: Accuracy on the test split.
        fgsm_accuracy: Per ``fgsm_eps``, accuracy on the test split after one untargeted
            FGSM step of that size away from each image's true label (as ``run_fgsm.py``).
        fgsm_eps: The FGSM steps (L-infinity).
        num_negatives: Backworked images in this round's training set (0 in round 0).
        train_size: Images in this round's training set.
        train_seconds: Wall time of training (``None`` in round 0).
        old_negatives: Per earlier round, how this model classifies its negatives.
        old_mean_target_prob: Over every earlier negative: mean target probability
            (``None`` in round 0).
        old_max_target_prob: ... maximum target probability.
        old_frac_at_cap: ... fraction with target probability >= the cap.
        prob_cap: The cap (``BackworkConfig.prob_cap_min``).
        backwork_rows_at_cap: A fresh backwork run against this model: fraction of its
            images whose target probability reached the cap.
        backwork_labels_converged: ... fraction of labels that converged.
        backwork_steps: ... steps of the run.
        backwork_mean_label_steps: ... mean steps per label.
        backwork_reinits: ... re-initialisations in all.
        backwork_mean_target_prob: ... mean target probability of its images.
        backwork_max_num_steps: ... its step limit (``None``: a result given to the call).
        backwork_seconds: ... wall time.
        fooling: ``measure_fooling`` of this round's model (fixed seed and budget).
        confidence_on_noise: Mean top class probability on uniform-noise images (a fixed
            seed, the same in every round).
        confidence_on_zeros: Top class probability of an all-zero image.
        seconds: Wall time of the whole round.
    """

    round: int
    test_accuracy: float
    fgsm_accuracy: tuple[float, ...]
    fgsm_eps: tuple[float, ...]
    num_negatives: int
    train_size: int
    train_seconds: float | None
    old_negatives: tuple[NegativeConfidence, ...]
    old_mean_target_prob: float | None
    old_max_target_prob: float | None
    old_frac_at_cap: float | None
    prob_cap: float
    backwork_rows_at_cap: float
    backwork_labels_converged: float
    backwork_steps: int
    backwork_mean_label_steps: float
    backwork_reinits: int
    backwork_mean_target_prob: float
    backwork_max_num_steps: int | None
    backwork_seconds: float
    fooling: FoolingStats
    confidence_on_noise: float
    confidence_on_zeros: float
    seconds: float

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    def brief(self) -> dict:
        """The round's headline figures (one entry of ``compare_modes``), JSON-ready."""
        return {
            "round": self.round,
            "test_accuracy": self.test_accuracy,
            "fgsm_accuracy": {f"{e:g}": a for e, a in zip(self.fgsm_eps, self.fgsm_accuracy)},
            "fooling_rate": self.fooling.rate,
            "median_steps": self.fooling.median_steps,
            "mean_target_prob": self.fooling.mean_target_prob,
            "confidence_on_old_negatives": self.old_mean_target_prob,
            "confidence_on_noise": self.confidence_on_noise,
            "confidence_on_zeros": self.confidence_on_zeros,
            "num_negatives": self.num_negatives,
            "train_size": self.train_size,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, values: dict) -> RoundRecord:
        """The inverse of ``to_dict``."""
        values = dict(values)
        values["old_negatives"] = tuple(NegativeConfidence(**o) for o in values["old_negatives"])
        values["fooling"] = FoolingStats(**values["fooling"])
        values["fgsm_eps"] = tuple(values["fgsm_eps"])
        values["fgsm_accuracy"] = tuple(values["fgsm_accuracy"])
        return cls(**values)


class RetrainCallback:
    """Hooks called by ``retrain_rounds``; override what you need."""

    def on_round_end(
        self, record: RoundRecord, model: keras.Model, backworked: BackworkResult
    ) -> None:
        """Called after every finished (and saved) round, round 0 included."""


@dataclasses.dataclass(frozen=True, eq=False)
class RetrainResult:
    """The rounds of a retraining experiment.

    Attributes:
        records: One ``RoundRecord`` per finished round, round 0 first.
        models: The model of every finished round (round 0: the input model).
        backworked: The fresh backwork run against every round's model; its images are
            the next round's new negatives.
        mode: ``uniform`` or ``extra_class``.
        from_scratch: Whether every round trained a freshly initialised model.
        interrupted: Whether Ctrl-C stopped the run (finished rounds are kept).
        resumed_rounds: Rounds loaded from ``output_dir`` instead of computed.
        settings: What a resumed run must match.
    """

    records: tuple[RoundRecord, ...]
    models: tuple[keras.Model, ...]
    backworked: tuple[BackworkResult, ...]
    mode: str
    from_scratch: bool
    interrupted: bool
    resumed_rounds: int
    settings: dict

    @property
    def rounds(self) -> int:
        """Retraining rounds finished (round 0 not counted)."""
        return len(self.records) - 1

    def summary(self) -> dict:
        """A JSON-ready summary (``retrain.json``)."""
        return {
            "mode": self.mode,
            "from_scratch": self.from_scratch,
            "rounds": self.rounds,
            "interrupted": self.interrupted,
            "resumed_rounds": self.resumed_rounds,
            "records": [r.to_dict() for r in self.records],
            "settings": self.settings,
        }


def compare_modes(results: Sequence[RetrainResult]) -> dict:
    """The headline figures of retraining runs side by side, JSON-ready.

    Returns:
        ``{mode: [RoundRecord.brief() per round], ..., "settings": {...}}``: the rounds of
        every mode, and the measurement settings (taken from the first result).

    Raises:
        ValueError: no results, or two results of the same mode.
    """
    if not results:
        raise ValueError("results is empty; expected one RetrainResult per mode")
    modes = [r.mode for r in results]
    if len(set(modes)) != len(modes):
        raise ValueError(f"results repeat a mode: {modes}")
    first = results[0].settings
    keys = ("fooling_budget", "fooling_examples", "fooling_seed", "fooling_threshold")
    settings = {k: first.get(k) for k in keys}
    settings.update(
        epochs_per_round=first["train"]["epochs"],
        from_scratch=first["from_scratch"],
        num_zero=first["num_zero"],
        num_noise=first["num_noise"],
        num_noise_probe=first["num_noise_probe"],
        fgsm_eps=first["fgsm_eps"],
        backwork_max_num_steps=first["backwork"]["max_num_steps"],
        backwork_num_examples=first["backwork"]["num_examples"],
        data=first["data"],
        model=first["model"],
    )
    table = {r.mode: [record.brief() for record in r.records] for r in results}
    return {**table, "settings": settings}


def _flat_negatives(result: BackworkResult) -> tuple[np.ndarray, np.ndarray]:
    """``(images [L*E, ...], labels [L*E])`` of a backworking result."""
    per = result.images.shape[1]
    return result.images.reshape(-1, *result.images.shape[2:]), np.repeat(result.labels, per)


def _confidence(model, round_index, result, num_classes, cap, strategy) -> tuple:
    """``NegativeConfidence`` and the target probabilities of one earlier round's images."""
    images, labels = _flat_negatives(result)
    probs = attacks.probabilities(model, images, strategy=strategy)
    target = probs[np.arange(len(labels)), labels]
    negative = float(probs[:, num_classes].mean()) if probs.shape[1] > num_classes else None
    conf = NegativeConfidence(
        round=int(round_index),
        count=len(labels),
        mean_target_prob=float(target.mean()),
        max_target_prob=float(target.max()),
        frac_at_cap=float(np.mean(target >= cap)),
        mean_negative_prob=negative,
    )
    return conf, target


def _fgsm_accuracy(model, data: Dataset, eps: float, strategy) -> float:
    """Test accuracy after one untargeted FGSM step of size ``eps`` away from the true label."""
    x_adv = attacks.fgsm(model, data.x_test, eps, y=data.y_test, strategy=strategy)
    probs = attacks.probabilities(model, x_adv, strategy=strategy)
    return float(np.mean(probs.argmax(-1) == data.y_test))


def _probe_images(data: Dataset, config: RetrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The uniform-noise images (seeded by ``fooling_seed``) and the all-zero image."""
    rng = np.random.default_rng([config.fooling_seed, 2])
    shape = (config.num_noise_probe, *data.image_shape)
    noise = rng.uniform(0.0, 1.0, size=shape).astype(np.float32)
    return noise, np.zeros((1, *data.image_shape), np.float32)


def _with_negative_class(model: keras.Model, data: Dataset) -> Dataset:
    """``data`` with the extra class named when ``model`` was grown by one; it has no
    images, so no reference set and no row of it is ever made."""
    if _num_outputs(model) == data.num_classes + 1:
        names = (*data.class_names, negative_class_name(data.class_names))
        return dataclasses.replace(data, class_names=names)
    return data


def _measure_round(
    round_index: int,
    model: keras.Model,
    data: Dataset,
    backwork_config: BackworkConfig,
    config: RetrainConfig,
    *,
    fresh: BackworkResult | None,
    earlier: Sequence[BackworkResult],
    strategy,
    backwork_callbacks,
    given: bool = False,
) -> tuple[BackworkResult, dict]:
    """The round's fresh backwork run (unless ``fresh`` is given) and its record's fields
    (the fooling measurement among them; empty when interrupted), with one reference set
    for both backwork runs."""
    known = _with_negative_class(model, data)  # the classes the model knows
    refs = reference_set(model, known, backwork_config)
    if fresh is None:
        fresh = backwork(
            model, known, backwork_config, strategy, backwork_callbacks, references=refs
        )
    if fresh.interrupted:
        return fresh, {}
    fooling = measure_fooling(
        model, known, backwork_config, config, references=refs, strategy=strategy
    )
    del refs  # the largest buffers of a round: freed and handed back before the next
    gc.collect()
    _tf.release_free_memory()
    if fooling.interrupted:
        return fresh, {}
    cap = backwork_config.prob_cap_min
    old, targets = [], []
    for k, result in enumerate(earlier):
        conf, target = _confidence(model, k, result, data.num_classes, cap, strategy)
        old.append(conf)
        targets.append(target)
    pooled = np.concatenate(targets) if targets else None
    fresh_target = fresh.target_probs
    noise, zeros = _probe_images(data, config)
    fields = dict(
        round=int(round_index),
        test_accuracy=models.evaluate(model, data.x_test, data.y_test),
        fgsm_accuracy=tuple(_fgsm_accuracy(model, data, e, strategy) for e in config.fgsm_eps),
        fgsm_eps=tuple(config.fgsm_eps),
        num_negatives=int(sum(r.images.shape[0] * r.images.shape[1] for r in earlier)),
        old_negatives=tuple(old),
        old_mean_target_prob=None if pooled is None else float(pooled.mean()),
        old_max_target_prob=None if pooled is None else float(pooled.max()),
        old_frac_at_cap=None if pooled is None else float(np.mean(pooled >= cap)),
        prob_cap=float(cap),
        backwork_rows_at_cap=float(np.mean(fresh_target >= cap)),
        backwork_labels_converged=float(np.mean(fresh.converged)),
        backwork_steps=int(fresh.steps),
        backwork_mean_label_steps=float(np.mean(fresh.label_steps)),
        backwork_reinits=int(np.sum(fresh.reinits)),
        backwork_mean_target_prob=float(fresh_target.mean()),
        backwork_max_num_steps=None if given else int(backwork_config.max_num_steps),
        backwork_seconds=float(fresh.wall_time),
        fooling=fooling,
        confidence_on_noise=top_digit_confidence(model, noise, data.num_classes, strategy),
        confidence_on_zeros=top_digit_confidence(model, zeros, data.num_classes, strategy),
    )
    return fresh, fields


#: The version of ``state.json`` this code writes: 2 holds the fingerprints of the model's
#: weights and of the data (a folder of version 1 has neither and is never resumed).
STATE_VERSION = 2
#: Settings that name things but do not decide them (the fingerprints do): not compared.
_NAMES_ONLY = (("model", "name"), ("data", "name"), ("data", "source"))
#: The ``RetrainConfig`` fields that are no settings of the rounds (or that are, through
#: the backworking and training settings they change).
_NOT_SETTINGS = ("rounds", "mode", "from_scratch", "resume", "epochs", "max_num_steps")


def _is_setting(field: str, mode: str) -> bool:
    """Whether a ``RetrainConfig`` field decides the rounds of ``mode`` (``adversarial_*``
    only those of ``adversarial`` mode)."""
    if field == "adversarial_epochs":  # decides train.epochs, which is compared
        return False
    if field.startswith("adversarial_"):
        return mode == "adversarial"
    return field not in _NOT_SETTINGS


def weights_fingerprint(model: keras.Model) -> str:
    """A SHA-256 (hex) of every weight array of ``model``: its dtype, shape and bytes, in the
    model's order. The same weights under another model or file name have the same
    fingerprint; one changed weight gives another."""
    import hashlib

    digest = hashlib.sha256()
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        digest.update(f"{w.dtype.str}{w.shape};".encode())
        digest.update(w.tobytes())
    return digest.hexdigest()


def _settings(model, data, backwork_config, train_config, config) -> dict:
    """The JSON form of everything a resumed run must share with the interrupted one (the
    model's and the data's parts left out when they are ``None``). The configs are the
    rounds' own (``RetrainConfig.round_configs``)."""
    train = dataclasses.asdict(train_config)
    train.pop("verbose")
    settings = {
        "mode": config.mode,
        "from_scratch": bool(config.from_scratch),
        **{k: v for k, v in dataclasses.asdict(config).items() if _is_setting(k, config.mode)},
        "backwork": dataclasses.asdict(backwork_config),
        "train": train,
    }
    if data is not None:
        settings["data"] = {
            "name": data.name,
            "source": data.source,
            "num_train": len(data.x_train),
            "num_test": len(data.x_test),
            "class_names": list(data.class_names),
            "image_shape": list(data.image_shape),
            "fingerprint": models.data_fingerprint(data),
        }
    if model is not None:
        settings["model"] = {
            "name": model.name,
            "params": int(model.count_params()),
            "weights": weights_fingerprint(model),
        }
    return json.loads(json.dumps(settings))


def _rounds_phrase(n: int) -> str:
    """``round 0`` or ``rounds 0 to <n - 1>``: the first ``n`` rounds, round 0 counted."""
    return "round 0" if n == 1 else f"rounds 0 to {n - 1}"


def _short(fingerprint) -> str:
    return f"{fingerprint[:12]}..." if isinstance(fingerprint, str) else str(fingerprint)


def _difference(group: str | None, key: str, saved, wanted) -> str:
    """One field that differs, as the rest of "the finished rounds were made with ..."."""
    if (group, key) == ("model", "weights"):
        return f"another model: weights fingerprint {_short(saved)} vs {_short(wanted)}"
    if (group, key) == ("model", "params"):
        return f"another model: {saved} parameters vs {wanted}"
    if (group, key) == ("data", "fingerprint"):
        return f"other data: fingerprint {_short(saved)} vs {_short(wanted)}"
    if group == "data":
        return f"data {key} {saved} but this run has {wanted}"
    what = {None: "retraining", "backwork": "backwork", "train": "training"}.get(group, group)
    return f"{what} {key} {saved} but this run asks for {wanted}"


def _differences(saved: dict, wanted: dict, unchecked=()) -> list[str]:
    """Every field of ``wanted`` (one level into its groups) that ``saved`` holds otherwise;
    ``unchecked`` names fields (``"backwork.labels"``) left out."""
    out = []
    for key, value in wanted.items():
        if isinstance(value, dict):
            old = saved.get(key) if isinstance(saved.get(key), dict) else {}
            for field, new in value.items():
                if (key, field) in _NAMES_ONLY or f"{key}.{field}" in unchecked:
                    continue
                if old.get(field, "(none)") != new:
                    out.append(_difference(key, field, old.get(field, "(none)"), new))
        elif key not in unchecked and saved.get(key, "(none)") != value:
            out.append(_difference(None, key, saved.get(key, "(none)"), value))
    if any(d.startswith("another model: weights") for d in out):  # one line says it
        out = [d for d in out if not d.startswith("another model: ") or "weights" in d]
    return out


class FolderConflict(ValueError):
    """A retraining folder that a run would reset or mix with: refused before any work.

    Attributes:
        output_dir: The folder.
        kind: ``finished`` (finished rounds, and the run does not resume them),
            ``differ`` (the run resumes them with other settings, model or data),
            ``unversioned`` (finished rounds saved without fingerprints, which cannot be
            checked) or ``unlisted`` (round folders but no ``state.json`` listing them).
        finished: The finished rounds (``unlisted``: the round folders found).
        differences: What differs, one phrase per field (``differ`` only).
    """

    def __init__(self, output_dir, kind: str, finished=(), differences=()):
        self.output_dir = str(output_dir)
        self.kind = kind
        self.finished = tuple(finished)
        self.differences = tuple(differences)
        super().__init__(self.describe())

    def describe(self, resume: str = "resume=True", output_dir: str = "output_dir") -> str:
        """The message, naming the resume switch and the output folder as ``resume`` and
        ``output_dir`` say (a run script passes its flags)."""
        where, n = self.output_dir, len(self.finished)
        elsewhere = f"write to another {output_dir}"
        if self.kind == "finished":
            return (
                f"{where} holds {n} finished round(s) ({_rounds_phrase(n)}), which a run that does not "
                f"resume them would start afresh over; continue them with {resume}, or "
                f"{elsewhere}"
            )
        if self.kind == "differ":
            return (
                f"{resume}: the finished rounds in {where} were made with "
                + "; with ".join(self.differences)
                + f"; resume with the settings, model and data they were made with, or "
                f"{elsewhere}"
            )
        if self.kind == "unversioned":
            return (
                f"{resume}: the {n} finished round(s) in {where} were saved without "
                "fingerprints of their model's weights and data (an older state.json), so "
                f"whether this run continues them with the same model and data cannot be "
                f"checked; {elsewhere}, or remove {where} to start the rounds afresh"
            )
        folders = ", ".join(f"round_{r}" for r in self.finished)
        return (
            f"{where} holds round folders ({folders}) but no {STATE_FILE} listing them; "
            f"remove them, or {elsewhere}"
        )


def _round_folders(output_dir) -> list[int]:
    """The rounds ``r`` of the non-empty ``round_<r>/`` folders of ``output_dir``."""
    found = []
    for path in Path(output_dir).glob("round_*"):
        suffix = path.name[len("round_") :]
        if path.is_dir() and suffix.isdigit() and any(path.iterdir()):
            found.append(int(suffix))
    return sorted(found)


def check_folder(
    output_dir: str | os.PathLike,
    model: keras.Model | None,
    data: Dataset | None,
    backwork_config: BackworkConfig,
    config: RetrainConfig,
    train_config: models.TrainConfig = DEFAULT_TRAIN_CONFIG,
    *,
    unchecked: Sequence[str] = (),
) -> dict | None:
    """Refuses a retraining folder that ``retrain_rounds`` would reset or mix with; reads
    and writes nothing else, so it can run before any work.

    Finished rounds (listed in ``state.json``) are refused unless ``config.resume``; when
    resumed, they must have been made with the same settings (``config``, the backworking
    and training settings of the rounds), the same weights (``weights_fingerprint``) and
    the same data (``tfool.models.data_fingerprint``). A folder without finished rounds is
    free. Pass ``model`` or ``data`` as ``None`` to check everything else before they are
    loaded (and check again once they are).

    Args:
        output_dir: The mode's retraining folder.
        model: The starting model (round 0), or ``None``: not checked.
        data: Its data, or ``None``: not checked.
        backwork_config: The backworking settings, as given to ``retrain_rounds``.
        config: The retraining settings; ``config.resume`` says whether to continue.
        train_config: The training settings, as given to ``retrain_rounds``.
        unchecked: Settings left out of the check, as ``"backwork.labels"`` (what the
            caller cannot know yet).

    Returns:
        The folder's state (``read_state``) or ``None`` when it has none.

    Raises:
        FolderConflict: a ``ValueError`` whose message names the folder, the finished
            rounds and every field that differs, with what to do.
        ValueError: a damaged ``state.json``, or a finished round whose files are missing.
    """
    state = read_state(output_dir)
    if state is None:
        stray = _round_folders(output_dir)
        if stray:
            raise FolderConflict(output_dir, "unlisted", stray)
        return None
    finished = [r.round for r in state["records"]]
    if not finished:
        return state
    if not config.resume:
        raise FolderConflict(output_dir, "finished", finished)
    saved = state["settings"]
    if state["version"] < STATE_VERSION or "weights" not in saved.get("model", {}):
        raise FolderConflict(output_dir, "unversioned", finished)
    backwork_config, train_config = config.round_configs(backwork_config, train_config)
    wanted = _settings(model, data, backwork_config, train_config, config)
    differences = _differences(saved, wanted, unchecked)
    if differences:
        raise FolderConflict(output_dir, "differ", finished, differences)
    for r in finished:
        names = ("backwork.npz", "model.keras") if r > 0 else ("backwork.npz",)
        for name in names:
            if not (_round_dir(output_dir, r) / name).is_file():
                raise ValueError(
                    f"{_round_dir(output_dir, r) / name} is missing, but {STATE_FILE} lists "
                    f"round {r} as finished; restore it, or remove {output_dir} to start the "
                    "rounds afresh"
                )
    return state


def _round_dir(output_dir, r: int) -> Path:
    return Path(output_dir) / f"round_{r}"


def _write_state(output_dir, settings, records) -> None:
    state = {
        "version": STATE_VERSION,
        "settings": settings,
        "records": [r.to_dict() for r in records],
    }
    io.write_json(Path(output_dir) / STATE_FILE, state)


def _save_round(output_dir, record, model, fresh, settings, records) -> None:
    """Writes a round's model, backworked images and record, then marks it finished."""
    where = _round_dir(output_dir, record.round)
    if record.round > 0:
        models.save_model(model, where / "model.keras")
    io.write_npz(where / "backwork.npz", **result_arrays(fresh))
    io.write_json(where / "record.json", record.to_dict())
    _write_state(output_dir, settings, records)  # the round counts from here on


def read_state(output_dir: str | os.PathLike) -> dict | None:
    """The ``state.json`` of a retraining folder (``None`` when it has none): what a resumed
    run continues, checked so that a damaged file is refused before any work.

    Returns:
        ``{"version": int, "settings": dict, "records": [RoundRecord, ...]}``; a file
        written before versions were recorded is version 1.

    Raises:
        ValueError: the file is not JSON, lacks its ``settings`` and ``records``, or lists
            rounds other than 0, 1, 2, ...; the message names the file.
    """
    path = Path(output_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        state = io.read_json(path)
        records = [RoundRecord.from_dict(r) for r in state["records"]]
        if not isinstance(state["settings"], dict):
            raise TypeError("settings is not a mapping")
        version = state.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise TypeError(f"version {version!r} is not an integer >= 1")
        rounds = [r.round for r in records]
        if rounds != list(range(len(rounds))):
            raise ValueError(f"it lists rounds {rounds}, expected 0, 1, 2, ...")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{path} is damaged ({type(err).__name__}: {err}); remove it (or its folder) to "
            "start the rounds afresh, or resume elsewhere"
        ) from err
    if version > STATE_VERSION:
        raise ValueError(
            f"{path} has version {version}, newer than this code's {STATE_VERSION}; resume "
            "with the code that wrote it, or write elsewhere"
        )
    return {"version": version, "settings": state["settings"], "records": records}


def _load_rounds(output_dir, state, model, strategy) -> tuple[list, list, list]:
    """The records, models (``model`` first) and backwork runs of the finished rounds of
    ``state`` (``check_folder``'s), saved in ``output_dir`` (just ``model`` when none)."""
    records = state["records"] if state is not None else []
    if not records:
        logger.info("retrain: nothing to resume in %s; starting at round 0", output_dir)
        return [], [model], []
    fresh, loaded = [], [model]
    strategy = strategy or tf.distribute.get_strategy()
    for record in records:
        where = _round_dir(output_dir, record.round)
        fresh.append(load_result(where / "backwork.npz"))
        if record.round > 0:
            with strategy.scope():
                loaded.append(models.load_model(where / "model.keras"))
    logger.info("retrain: resumed %d finished round(s) from %s", len(records), output_dir)
    return records, loaded, fresh


def _next_model(current, num_classes, mode, from_scratch, strategy) -> keras.Model:
    """The model a round trains: a copy of ``current``, grown by one class in extra_class
    mode if it has none yet, re-initialised when ``from_scratch``."""
    with strategy.scope():
        if mode == "extra_class" and _num_outputs(current) == num_classes:
            grown = grow_output_layer(current)
            return copy_model(grown, fresh=True) if from_scratch else grown
        return copy_model(current, fresh=from_scratch)


def retrain_rounds(
    model: keras.Model,
    data: Dataset,
    backwork_config: BackworkConfig,
    config: RetrainConfig,
    train_config: models.TrainConfig = DEFAULT_TRAIN_CONFIG,
    *,
    initial: BackworkResult | None = None,
    strategy: tf.distribute.Strategy | None = None,
    output_dir: str | os.PathLike | None = None,
    callbacks: Sequence[RetrainCallback] | None = None,
    backwork_callbacks: Sequence[BackworkCallback] | None = None,
) -> RetrainResult:
    """Rounds of backwork, augment and retrain, measuring what each round changes.

    Round 0 measures ``model`` and backworks a batch of negatives against it (or takes
    ``initial``). Round ``r >= 1`` adds the negatives of every earlier round (plus
    ``config.num_zero`` zero and ``config.num_noise`` noise images) to the training data with
    ``augment_with_negatives``, trains a copy of the previous round's model (or a freshly
    initialised one) on it, and then measures the new model: test accuracy, FGSM accuracy,
    its probabilities on every earlier round's negatives, and a fresh backwork run against
    it (seed ``backwork_config.seed + r``) whose images are the next round's negatives.

    With ``output_dir`` every finished round's model (``round_<r>/model.keras``), backworked
    images (``backwork.npz``) and record (``record.json``) are written, and ``state.json``
    lists the finished rounds; ``config.resume`` loads them and continues. Training and
    backworking are seeded per round, so a resumed run repeats an uninterrupted one. The
    folder is checked first (``check_folder``): finished rounds are never started afresh
    over, nor continued with other settings, weights or data.

    Args:
        model: The classifier (logits) to start from; it is not modified.
        data: Its training and test data; the reference sets of every backwork run.
        backwork_config: Settings of every round's backwork run (its step limit capped by
            ``config.max_num_steps``).
        config: The rounds, mode, counts and limits (``RetrainConfig``).
        train_config: How each round trains (its epochs replaced by ``config.epochs``; seed
            ``train_config.seed + r`` in round ``r``).
        initial: A backworking result against ``model`` to use as round 0's negatives.
        strategy: Optional ``tf.distribute`` strategy for training, backworking and FGSM.
        output_dir: Where to keep every finished round (``None``: nothing is written).
        callbacks: ``RetrainCallback`` objects, called after every finished round.
        backwork_callbacks: ``BackworkCallback`` objects for every backwork run.

    Returns:
        A ``RetrainResult``; after Ctrl-C, the rounds finished so far (``interrupted``).

    Raises:
        ValueError: a model whose outputs do not match the data's classes, ``resume``
            without ``output_dir``, an interrupted ``initial``, or a folder that
            ``check_folder`` refuses (a ``FolderConflict``: finished rounds without
            ``resume``, or made with other settings, weights or data).
    """
    _check_dataset(data)
    given_configs = (backwork_config, train_config)
    backwork_config, train_config = config.round_configs(backwork_config, train_config)
    if _num_outputs(model) != data.num_classes:
        raise ValueError(
            f"model {model.name!r} has {_num_outputs(model)} outputs but the data has "
            f"{data.num_classes} classes; start from a model of the data's classes"
        )
    if config.resume and output_dir is None:
        raise ValueError("resume=True needs output_dir, the folder of the finished rounds")
    if classifier.has_graph(model) and classifier.final_softmax(model) is not None:
        model = classifier.logits_copy(model)  # every round trains logits
    if initial is not None and initial.interrupted:
        raise ValueError("initial is an interrupted backworking run; pass a finished one")
    strategy = strategy or tf.distribute.get_strategy()
    callbacks = list(callbacks or [])
    settings = _settings(model, data, backwork_config, train_config, config)

    records: list[RoundRecord] = []
    round_models: list[keras.Model] = [model]
    fresh_runs: list[BackworkResult] = []
    resumed = 0
    if output_dir is not None:  # before anything is trained or written
        given_backwork, given_train = given_configs
        state = check_folder(output_dir, model, data, given_backwork, config, given_train)
        if config.resume:
            records, round_models, fresh_runs = _load_rounds(output_dir, state, model, strategy)
            records, fresh_runs = records[: config.rounds + 1], fresh_runs[: config.rounds + 1]
            round_models = round_models[: config.rounds + 1]
            resumed = len(records)
        if not records:
            _write_state(output_dir, settings, [])

    def run_round(r: int) -> bool:
        """Trains (``r >= 1``), measures and keeps round ``r``; False when interrupted."""
        start = time.perf_counter()
        round_model, train, fresh = model, None, initial if r == 0 else None
        round_config = backwork_config
        if r > 0:
            negatives = np.concatenate([_flat_negatives(f)[0] for f in fresh_runs])
            augmented = augment_with_negatives(
                data,
                negatives,
                config.mode,
                config.num_zero,
                config.num_noise,
                seed=train_config.seed + r,
            )
            keras.utils.set_random_seed(train_config.seed + r)
            round_model = _next_model(
                round_models[-1], data.num_classes, config.mode, config.from_scratch, strategy
            )
            round_train = dataclasses.replace(train_config, seed=train_config.seed + r)
            trained = models.train(
                round_model, augmented, round_train, strategy, adversary=config.adversary()
            )
            interrupts.check()
            train = (len(augmented.x_train), float(trained.train_seconds))
            round_config = dataclasses.replace(backwork_config, seed=backwork_config.seed + r)
        fresh, fields = _measure_round(
            r,
            round_model,
            data,
            round_config,
            config,
            fresh=fresh,
            earlier=fresh_runs,
            strategy=strategy,
            backwork_callbacks=backwork_callbacks,
            given=r == 0 and initial is not None,
        )
        if not fields:
            return False
        record = RoundRecord(
            **fields,
            train_size=len(data.x_train) if train is None else train[0],
            train_seconds=None if train is None else train[1],
            seconds=time.perf_counter() - start,
        )
        records.append(record)
        fresh_runs.append(fresh)
        if r > 0:
            round_models.append(round_model)
        if output_dir is not None:
            _save_round(output_dir, record, round_model, fresh, settings, records)
        logger.info(
            "retrain %s round %d/%d: test accuracy %.2f%%, fooled %.0f%% of %d rows within "
            "%d steps (median %s), %.0f s",
            config.mode,
            r,
            config.rounds,
            100 * record.test_accuracy,
            100 * record.fooling.rate,
            record.fooling.rows,
            record.fooling.budget,
            "-" if record.fooling.median_steps is None else f"{record.fooling.median_steps:.0f}",
            record.seconds,
        )
        for cb in callbacks:
            cb.on_round_end(record, round_model, fresh)
        return True

    interrupted = False
    try:
        for r in range(len(records), int(config.rounds) + 1):
            if not run_round(r):
                interrupted = True
                break
    except KeyboardInterrupt:  # Ctrl-C outside a backwork run (training, measuring)
        interrupted = True
    if interrupted:
        kept = f"kept in {output_dir}" if output_dir is not None else "kept"
        logger.warning(
            "retraining interrupted with %d finished round(s)%s",
            len(records),
            f" ({_rounds_phrase(len(records))}); they are {kept}" if records else "",
        )
    return RetrainResult(
        records=tuple(records),
        models=tuple(round_models[: len(records)] or round_models[:1]),
        backworked=tuple(fresh_runs),
        mode=config.mode,
        from_scratch=bool(config.from_scratch),
        interrupted=interrupted,
        resumed_rounds=resumed,
        settings=settings,
    )
