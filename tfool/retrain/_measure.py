"""What a round measures: the fooling rate from fresh noise, the confidence on earlier
negatives and on noise, test and FGSM accuracy (``RoundRecord``)."""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfool import _tf, attacks, models
from tfool.backwork import (
    BackworkCallback,
    BackworkConfig,
    BackworkResult,
    SaveEvent,
    backwork,
    reference_set,
)
from tfool.data import Dataset
from tfool.retrain._augment import flat_negatives, negative_class_name
from tfool.retrain._config import RetrainConfig
from tfool.retrain._surgery import num_outputs

#: ``measure_fooling``'s settings when none are given.
_DEFAULTS = RetrainConfig()


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


class FirstReach(BackworkCallback):
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
    config: RetrainConfig = _DEFAULTS,
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
    reach = FirstReach(threshold)
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


def _confidence(model, round_index, result, num_classes, cap, strategy) -> tuple:
    """``NegativeConfidence`` and the target probabilities of one earlier round's images."""
    images, labels = flat_negatives(result)
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


def _old_negatives(model, earlier, num_classes, cap, strategy) -> dict:
    """The record's fields on the negatives of the earlier rounds ``earlier``: each round's
    ``NegativeConfidence`` and their pooled target probabilities (``None`` in round 0)."""
    old, targets = [], []
    for k, result in enumerate(earlier):
        conf, target = _confidence(model, k, result, num_classes, cap, strategy)
        old.append(conf)
        targets.append(target)
    pooled = np.concatenate(targets) if targets else None
    return dict(
        old_negatives=tuple(old),
        old_mean_target_prob=None if pooled is None else float(pooled.mean()),
        old_max_target_prob=None if pooled is None else float(pooled.max()),
        old_frac_at_cap=None if pooled is None else float(np.mean(pooled >= cap)),
    )


def with_negative_class(model: keras.Model, data: Dataset) -> Dataset:
    """``data`` with the extra class named when ``model`` was grown by one; it has no
    images, so no reference set and no row of it is ever made."""
    if num_outputs(model) == data.num_classes + 1:
        names = (*data.class_names, negative_class_name(data.class_names))
        return dataclasses.replace(data, class_names=names)
    return data


def measure_round(
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
    known = with_negative_class(model, data)  # the classes the model knows
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
    old = _old_negatives(model, earlier, data.num_classes, cap, strategy)
    fresh_target = fresh.target_probs
    noise, zeros = _probe_images(data, config)
    fields = dict(
        round=int(round_index),
        test_accuracy=models.evaluate(model, data.x_test, data.y_test),
        fgsm_accuracy=tuple(_fgsm_accuracy(model, data, e, strategy) for e in config.fgsm_eps),
        fgsm_eps=tuple(config.fgsm_eps),
        num_negatives=int(sum(r.images.shape[0] * r.images.shape[1] for r in earlier)),
        **old,
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
