"""Retraining with backworked negatives: rounds of backwork, augment, retrain and measure."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfool import attacks, io, models
from tfool.backwork import (
    BackworkCallback,
    BackworkConfig,
    BackworkResult,
    backwork,
    load_result,
    result_arrays,
)
from tfool.data import Dataset

logger = logging.getLogger(__name__)

MODES = ("uniform", "extra_class")


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """How ``retrain_rounds`` retrains.

    Attributes:
        rounds: Retraining rounds after round 0 (the measured starting model); 0 runs none.
        mode: ``uniform`` targets for the negatives (the MNIST post) or an ``extra_class``
            (Nguyen et al.).
        from_scratch: Train a freshly initialised model every round instead of going on
            from the previous round's weights.
        resume: Continue from the rounds finished in the output folder.
        epochs: Training epochs per round (``None``: the training config's).
        num_zero: All-zero images added every round.
        num_noise: Uniform-noise images added every round.
        max_num_steps: Step limit of every round's backwork run, the smaller of this and
            the backworking config's (``None``: the backworking config's).
        fgsm_eps: FGSM step (pixel range [0, 1]) whose test accuracy every round records.
    """

    rounds: int = 0
    mode: str = "uniform"
    from_scratch: bool = False
    resume: bool = False
    epochs: int | None = 2
    num_zero: int = 800
    num_noise: int = 800
    max_num_steps: int | None = 150
    fgsm_eps: float = 0.1

    def __post_init__(self):
        _check_mode(self.mode)
        if int(self.rounds) != self.rounds or self.rounds < 0:
            raise ValueError(f"rounds={self.rounds} must be an integer >= 0")
        if not (np.isfinite(self.fgsm_eps) and 0 <= self.fgsm_eps <= 1):
            raise ValueError(f"fgsm_eps={self.fgsm_eps} must be a number in [0, 1]")
        for name in ("num_zero", "num_noise"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(f"{name}={value} must be an integer >= 0")
        for name in ("epochs", "max_num_steps"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name}={value} must be an integer >= 1 or None")

    def round_configs(
        self, backwork_config: BackworkConfig, train_config: models.TrainConfig
    ) -> tuple[BackworkConfig, models.TrainConfig]:
        """The backworking and training settings every round uses."""
        if self.max_num_steps is not None:
            steps = min(backwork_config.max_num_steps, self.max_num_steps)
            backwork_config = dataclasses.replace(backwork_config, max_num_steps=steps)
        if self.epochs is not None:
            train_config = dataclasses.replace(train_config, epochs=self.epochs)
        return backwork_config, train_config


#: ``AugmentedData.origin`` codes: where each training row came from.
ORIGIN_DATA, ORIGIN_NEGATIVE, ORIGIN_ZERO, ORIGIN_NOISE = 0, 1, 2, 3
NEGATIVE_CLASS_NAME = "negative"
STATE_FILE = "state.json"
#: Training of every round: two epochs from the previous round's weights, else as usual.
DEFAULT_TRAIN_CONFIG = models.TrainConfig(epochs=2)


@dataclasses.dataclass(frozen=True, eq=False)
class AugmentedData:
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
    def num_classes(self) -> int:
        """The number of target classes ``K``."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one image."""
        return tuple(self.x_train.shape[1:])

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
    with a new class ``C``; the targets have ``C + 1`` columns. The data's own images keep
    one-hot targets. Nothing of ``data`` or ``negatives`` is modified.

    Args:
        data: The original dataset (integer labels).
        negatives: Backworked images ``[M, H, W, C]`` or ``[L, E, H, W, C]`` (a
            ``BackworkResult.images``); ``M`` may be 0.
        mode: ``uniform`` or ``extra_class``.
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

    rng = np.random.default_rng(seed)
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
    else:
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
    order = rng.permutation(len(x))
    names = tuple(data.class_names) + ((NEGATIVE_CLASS_NAME,) if mode == "extra_class" else ())
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
class RoundRecord:
    """What one round measured. Round 0 is the model given to ``retrain_rounds``.

    Attributes:
        round: 0 for the input model, then 1, 2, ...
        test_accuracy: Accuracy on the test split.
        fgsm_accuracy: Accuracy on the test split after one untargeted FGSM step of size
            ``fgsm_eps`` away from each image's true label (as ``run_fgsm.py``).
        fgsm_eps: The FGSM step (L-infinity).
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
        seconds: Wall time of the whole round.
    """

    round: int
    test_accuracy: float
    fgsm_accuracy: float
    fgsm_eps: float
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
    seconds: float

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RoundRecord:
        """The inverse of ``to_dict``."""
        values = dict(values)
        values["old_negatives"] = tuple(NegativeConfidence(**o) for o in values["old_negatives"])
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


def _record(
    round_index: int,
    model: keras.Model,
    data: Dataset,
    fresh: BackworkResult,
    earlier: Sequence[BackworkResult],
    config: BackworkConfig,
    *,
    fgsm_eps: float,
    strategy,
    start: float,
    train: tuple[int, float] | None = None,
    given: bool = False,
) -> RoundRecord:
    """Measures a round's model: accuracy, FGSM, old negatives, the fresh backwork run."""
    cap = config.prob_cap_min
    old, targets = [], []
    for k, result in enumerate(earlier):
        conf, target = _confidence(model, k, result, data.num_classes, cap, strategy)
        old.append(conf)
        targets.append(target)
    pooled = np.concatenate(targets) if targets else None
    fresh_target = fresh.target_probs
    return RoundRecord(
        round=int(round_index),
        test_accuracy=models.evaluate(model, data.x_test, data.y_test),
        fgsm_accuracy=_fgsm_accuracy(model, data, fgsm_eps, strategy),
        fgsm_eps=float(fgsm_eps),
        num_negatives=int(sum(r.images.shape[0] * r.images.shape[1] for r in earlier)),
        train_size=len(data.x_train) if train is None else int(train[0]),
        train_seconds=None if train is None else float(train[1]),
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
        backwork_max_num_steps=None if given else int(config.max_num_steps),
        backwork_seconds=float(fresh.wall_time),
        seconds=time.perf_counter() - start,
    )


def _settings(model, data, backwork_config, train_config, mode, from_scratch, extra) -> dict:
    """The JSON form of everything a resumed run must share with the interrupted one."""
    train = dataclasses.asdict(train_config)
    train.pop("verbose")
    settings = {
        "mode": mode,
        "from_scratch": bool(from_scratch),
        **extra,
        "backwork": dataclasses.asdict(backwork_config),
        "train": train,
        "data": {
            "name": data.name,
            "source": data.source,
            "num_train": len(data.x_train),
            "num_test": len(data.x_test),
        },
        "model": {"name": model.name, "params": int(model.count_params())},
    }
    return json.loads(json.dumps(settings))


def _round_dir(output_dir, r: int) -> Path:
    return Path(output_dir) / f"round_{r}"


def _save_round(output_dir, record, model, fresh, settings, records) -> None:
    """Writes a round's model, backworked images and record, then marks it finished."""
    where = _round_dir(output_dir, record.round)
    if record.round > 0:
        models.save_model(model, where / "model.keras")
    io.write_npz(where / "backwork.npz", **result_arrays(fresh))
    io.write_json(where / "record.json", record.to_dict())
    state = {"settings": settings, "records": [r.to_dict() for r in records]}
    io.write_json(Path(output_dir) / STATE_FILE, state)  # the round counts from here on


def _load_rounds(output_dir, settings, model, strategy) -> tuple[list, list, list]:
    """The finished rounds saved in ``output_dir`` (empty lists when there are none).

    Raises:
        ValueError: the saved rounds were made with other settings.
    """
    path = Path(output_dir) / STATE_FILE
    if not path.is_file():
        logger.info("retrain: nothing to resume in %s; starting at round 0", output_dir)
        return [], [], []
    state = io.read_json(path)
    if state["settings"] != settings:
        diff = sorted(
            k
            for k in set(settings) | set(state["settings"])
            if settings.get(k) != state["settings"].get(k)
        )
        raise ValueError(
            f"resume: the rounds in {output_dir} were made with other settings ({', '.join(diff)}"
            " differ); use the same flags, another output folder, or no resume"
        )
    records = [RoundRecord.from_dict(r) for r in state["records"]]
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
    backworking are seeded per round, so a resumed run repeats an uninterrupted one.

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
            without ``output_dir``, an interrupted ``initial``, or saved rounds made with
            other settings.
    """
    _check_dataset(data)
    backwork_config, train_config = config.round_configs(backwork_config, train_config)
    rounds, mode, from_scratch = config.rounds, config.mode, config.from_scratch
    num_zero, num_noise, fgsm_eps, resume = (
        config.num_zero,
        config.num_noise,
        config.fgsm_eps,
        config.resume,
    )
    if _num_outputs(model) != data.num_classes:
        raise ValueError(
            f"model {model.name!r} has {_num_outputs(model)} outputs but the data has "
            f"{data.num_classes} classes; start from a model of the data's classes"
        )
    if resume and output_dir is None:
        raise ValueError("resume=True needs output_dir, the folder of the finished rounds")
    if initial is not None and initial.interrupted:
        raise ValueError("initial is an interrupted backworking run; pass a finished one")
    strategy = strategy or tf.distribute.get_strategy()
    callbacks = list(callbacks or [])
    extra = {"num_zero": int(num_zero), "num_noise": int(num_noise), "fgsm_eps": float(fgsm_eps)}
    settings = _settings(model, data, backwork_config, train_config, mode, from_scratch, extra)

    records: list[RoundRecord] = []
    round_models: list[keras.Model] = [model]
    fresh_runs: list[BackworkResult] = []
    resumed = 0
    if resume:
        records, round_models, fresh_runs = _load_rounds(output_dir, settings, model, strategy)
        records, fresh_runs = records[: rounds + 1], fresh_runs[: rounds + 1]
        round_models = round_models[: rounds + 1]
        resumed = len(records)
    elif output_dir is not None:
        io.write_json(Path(output_dir) / STATE_FILE, {"settings": settings, "records": []})

    def finish(record, round_model, fresh) -> None:
        records.append(record)
        fresh_runs.append(fresh)
        if record.round > 0:
            round_models.append(round_model)
        if output_dir is not None:
            _save_round(output_dir, record, round_model, fresh, settings, records)
        logger.info(
            "retrain round %d: test accuracy %.2f%%, fresh backwork: %.0f%% of rows at the cap "
            "in %d steps",
            record.round,
            100 * record.test_accuracy,
            100 * record.backwork_rows_at_cap,
            record.backwork_steps,
        )
        for cb in callbacks:
            cb.on_round_end(record, round_model, fresh)

    def run_rounds() -> bool:
        """Runs the rounds still to do; True when a backwork run was interrupted."""
        if not records:
            start = time.perf_counter()
            fresh = initial
            if fresh is None:
                fresh = backwork(model, data, backwork_config, strategy, backwork_callbacks)
            if fresh.interrupted:
                return True
            record = _record(
                0,
                model,
                data,
                fresh,
                [],
                backwork_config,
                fgsm_eps=fgsm_eps,
                strategy=strategy,
                start=start,
                given=initial is not None,
            )
            finish(record, model, fresh)
        for r in range(len(records), int(rounds) + 1):
            start = time.perf_counter()
            negatives = np.concatenate([_flat_negatives(f)[0] for f in fresh_runs])
            augmented = augment_with_negatives(
                data, negatives, mode, num_zero, num_noise, seed=train_config.seed + r
            )
            keras.utils.set_random_seed(train_config.seed + r)
            new_model = _next_model(
                round_models[-1], data.num_classes, mode, from_scratch, strategy
            )
            round_train = dataclasses.replace(train_config, seed=train_config.seed + r)
            trained = models.train(new_model, augmented, round_train, strategy)
            round_config = dataclasses.replace(backwork_config, seed=backwork_config.seed + r)
            fresh = backwork(new_model, data, round_config, strategy, backwork_callbacks)
            if fresh.interrupted:
                return True
            record = _record(
                r,
                new_model,
                data,
                fresh,
                fresh_runs,
                round_config,
                fgsm_eps=fgsm_eps,
                strategy=strategy,
                start=start,
                train=(len(augmented.x_train), trained.train_seconds),
            )
            finish(record, new_model, fresh)
        return False

    try:
        interrupted = run_rounds()
    except KeyboardInterrupt:  # Ctrl-C between backwork runs
        interrupted = True
    if interrupted:
        logger.warning(
            "retraining interrupted after %d finished round(s); they are kept%s",
            max(len(records) - 1, 0),
            f" in {output_dir}" if output_dir is not None else "",
        )
    return RetrainResult(
        records=tuple(records),
        models=tuple(round_models[: len(records)] or round_models[:1]),
        backworked=tuple(fresh_runs),
        mode=mode,
        from_scratch=bool(from_scratch),
        interrupted=interrupted,
        resumed_rounds=resumed,
        settings=settings,
    )
