"""Noise survey: what ImageNet classifiers report, and how confidently, for random-noise images."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfool._tf import fold_batches, run_batch
from tfool.config import setting
from tfool.imagenet import MODEL_NAMES, ImagenetModel, ModelSpec

logger = logging.getLogger(__name__)

NOISE_KINDS = ("normal", "uniform")
#: The classifiers of the default survey.
SURVEY_MODELS = ("vgg16", "resnet50", "densenet121", "inception_v3", "mobilenet_v2")
#: The statistics of the post's table (pandas' ``describe``), in order.
STAT_NAMES = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")


@dataclasses.dataclass(frozen=True)
class SurveyConfig:
    """How to survey (the keyword arguments of ``noise_survey`` besides models).

    Attributes:
        num_images: Noise images fed to every surveyed model, >= 1 (the post: 1,000).
        noise: Noise of the survey: normal (the post's standard_normal * 255 cast to uint8)
            or uniform (pixels uniform in 0-255).
        batch_size: Noise images per forward pass (global batch size under a strategy),
            >= 1.
        image_size: Side of the noise images in pixels; each model sees their centre crop
            at its input size. ``None`` (0 on the command line): the largest input side
            among the surveyed models.
        seed: Seed of the noise images; image ``i`` depends only on ``(seed, i)``.
    """

    num_images: int = 1000
    noise: str = setting("normal", choices=NOISE_KINDS)
    batch_size: int = 50
    image_size: int | None = setting(None, none=0)
    seed: int = 0

    def __post_init__(self):
        if int(self.num_images) != self.num_images or self.num_images < 1:
            raise ValueError(f"num_images={self.num_images} must be an integer >= 1")
        if self.noise not in NOISE_KINDS:
            raise ValueError(f"noise={self.noise!r} must be one of {list(NOISE_KINDS)}")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be an integer >= 1")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size={self.image_size} must be None or a positive side")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed:
            raise ValueError(f"seed={self.seed!r} must be an integer")


@dataclasses.dataclass(frozen=True)
class SurveyExperiment:
    """ImageNet classifiers on random noise (run_fgsm.py's survey mode).

    Attributes:
        models: Classifiers the noise survey feeds, distinct, each a model name
            (``tfool.imagenet.MODEL_NAMES``) or name=/path/to/weights.h5 (or .keras) for
            local weights.
        weights: Weights of the surveyed models given without a path: imagenet, or None
            (none on the command line) for random weights.
        input_size: Input side in pixels of every surveyed model; ``None``: each
            architecture's own.
        survey: The survey settings (a ``SurveyConfig``).
    """

    models: tuple[str, ...] = SURVEY_MODELS
    weights: str | None = setting("imagenet", words={"imagenet": "imagenet", "none": None})
    input_size: int | None = None
    survey: SurveyConfig = SurveyConfig()

    def __post_init__(self):
        object.__setattr__(self, "models", tuple(self.models))
        names = [entry.partition("=")[0].strip() for entry in self.models]
        if not names or not set(names) <= set(MODEL_NAMES) or len(set(names)) != len(names):
            raise ValueError(
                f"models={self.models!r} needs one or more distinct entries name or "
                f"name=path, name one of {', '.join(MODEL_NAMES)}"
            )
        if self.weights not in ("imagenet", None):
            raise ValueError(f"weights={self.weights!r} must be 'imagenet' or None")

    def model_specs(self) -> tuple[ModelSpec, ...]:
        """One ``ModelSpec`` per entry of ``models``: its path, else ``weights``."""
        specs = []
        for entry in self.models:
            name, _, path = entry.partition("=")
            specs.append(ModelSpec(name.strip(), path.strip() or self.weights, self.input_size))
        return tuple(specs)


@dataclasses.dataclass(frozen=True, eq=False)
class ModelSurvey:
    """One model's answers to the noise images.

    Attributes:
        name: The model's name.
        labels: The top-1 class of every image, ``[N]`` int64.
        confidences: Its probability, ``[N]`` float32.
        stats: ``STAT_NAMES`` -> value, over ``confidences`` (std with ``ddof=1`` and
            linearly interpolated quartiles, as pandas' ``describe``).
        histogram: ``(class index, class name, count)`` of every label given, most frequent
            first (ties by index).
    """

    name: str
    labels: np.ndarray
    confidences: np.ndarray
    stats: dict[str, float]
    histogram: tuple[tuple[int, str, int], ...]

    def to_dict(self) -> dict:
        """A JSON-ready summary (statistics and histogram, not the per-image arrays)."""
        return {
            "name": self.name,
            "stats": dict(self.stats),
            "histogram": [{"index": i, "name": n, "count": c} for i, n, c in self.histogram],
        }


@dataclasses.dataclass(frozen=True, eq=False)
class SurveyResult:
    """The survey of every model over the same noise images.

    Attributes:
        models: One ``ModelSurvey`` per model, in the order given.
        config: The settings used (``image_size`` resolved).
        seed: The noise seed (``config.seed``).
    """

    models: tuple[ModelSurvey, ...]
    config: SurveyConfig
    seed: int

    def __getitem__(self, name: str) -> ModelSurvey:
        for survey in self.models:
            if survey.name == name:
                return survey
        raise KeyError(f"no model named {name!r}; surveyed: {[s.name for s in self.models]}")

    def table(self) -> tuple[list[str], list[list]]:
        """The post's table: a header (``statistic``, then one column per model) and rows."""
        header = ["statistic", *(s.name for s in self.models)]
        rows = [[stat, *(s.stats[stat] for s in self.models)] for stat in STAT_NAMES]
        return header, rows

    def to_dict(self) -> dict:
        """A JSON-ready summary of the survey (the seed beside the config, not inside it)."""
        config = dataclasses.asdict(self.config)
        del config["seed"]
        return {
            "config": config,
            "seed": self.seed,
            "models": [s.to_dict() for s in self.models],
        }


def describe(values: np.ndarray) -> dict[str, float]:
    """Count, mean, std (``ddof=1``), min, quartiles (linear) and max, as pandas' ``describe``."""
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        raise ValueError("values is empty; expected at least one value")
    q25, q50, q75 = np.percentile(v, [25, 50, 75])
    std = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
    stats = (v.size, v.mean(), std, v.min(), q25, q50, q75, v.max())
    return {name: float(x) for name, x in zip(STAT_NAMES, stats, strict=True)}


def label_histogram(labels: np.ndarray, names: Sequence[str]) -> tuple[tuple[int, str, int], ...]:
    """``(index, name, count)`` of every label present, most frequent first (ties by index)."""
    values, counts = np.unique(np.asarray(labels, np.int64), return_counts=True)
    order = sorted(range(len(values)), key=lambda k: (-counts[k], values[k]))
    return tuple((int(values[k]), names[values[k]], int(counts[k])) for k in order)


def noise_images(
    start: int, stop: int, size: int | Sequence[int], seed: int = 0, noise: str = "normal"
) -> np.ndarray:
    """Noise images ``start .. stop - 1`` of a seeded sequence, uint8 ``[N, H, W, 3]``.

    Image ``i`` depends only on ``(seed, i, size, noise)``, never on the batching.
    ``normal``: ``standard_normal * 255`` truncated toward zero and wrapped modulo 256, which
    is what the post's ``.astype(np.uint8)`` does on x86 (NumPy leaves out-of-range casts
    undefined, so the wrap is written out). ``uniform``: integers uniform in 0..255.

    Args:
        start: Index of the first image.
        stop: One past the last.
        size: Side, or ``(height, width)``.
        seed: The seed.
        noise: ``normal`` or ``uniform``.

    Returns:
        The images.
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise={noise!r} must be one of {list(NOISE_KINDS)}")
    if not 0 <= start <= stop:
        raise ValueError(f"start={start}, stop={stop}: expected 0 <= start <= stop")
    height, width = (size, size) if np.isscalar(size) else tuple(size)
    out = np.empty((stop - start, height, width, 3), np.uint8)
    for k, i in enumerate(range(start, stop)):
        rng = np.random.default_rng([seed, i])
        if noise == "normal":
            z = np.trunc(rng.standard_normal((height, width, 3)) * 255.0)
            out[k] = np.mod(z.astype(np.int64), 256).astype(np.uint8)
        else:
            out[k] = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return out


def center_crop(images: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """The centre ``(height, width)`` crop of ``[N, H, W, C]`` images (torchvision's rounding)."""
    height, width = size
    h, w = images.shape[1:3]
    if height > h or width > w:
        raise ValueError(f"crop size {tuple(size)} exceeds the images' {(h, w)}")
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return images[:, top : top + height, left : left + width]


def _named(models) -> list[tuple[str, ImagenetModel]]:
    pairs = list(models.items()) if isinstance(models, Mapping) else [(m.name, m) for m in models]
    if not pairs:
        raise ValueError("models is empty; expected at least one ImagenetModel")
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"model names {names} repeat; pass a dict name -> model to rename them")
    return pairs


def _top1_fn(model: ImagenetModel):
    """The model's compiled ``uint8 pixels -> (top-1 label, its probability)``."""

    # reduce_retracing, not an input_signature: MirroredStrategy.run re-binds the function
    # to per-replica values, which an input_signature rejects.
    @tf.function(reduce_retracing=True)
    def top1(pixels):
        probs = model.probabilities(tf.cast(pixels, tf.float32))
        return tf.argmax(probs, axis=-1), tf.reduce_max(probs, axis=-1)

    return top1


def noise_survey(
    models: Sequence[ImagenetModel] | Mapping[str, ImagenetModel],
    config: SurveyConfig = SurveyConfig(),
    *,
    strategy: tf.distribute.Strategy | None = None,
    verbose: int = 0,
) -> SurveyResult:
    """Feeds the same seeded noise images to every model and tabulates the top-1 answers.

    Args:
        models: ``ImagenetModel`` s (named by ``.name``) or a dict name -> model.
        config: Image count, noise kind, batch size, image side and the noise seed
            (``SurveyConfig``; ``image_size=None``: the largest input side among the models).
            ``config.seed`` is the one seed of the noise images.
        strategy: Optional ``tf.distribute`` strategy (models built in its scope).
        verbose: 1 shows a progress bar.

    Returns:
        A ``SurveyResult``.

    Raises:
        ValueError: bad settings, or an image size smaller than a model's input.
    """
    pairs = _named(models)
    largest = max(max(m.input_size) for _, m in pairs)
    if not isinstance(config, SurveyConfig):
        raise ValueError(f"config is a {type(config).__name__}, expected a SurveyConfig")
    if config.image_size is None:
        config = dataclasses.replace(config, image_size=largest)
    num_images, batch_size, noise = config.num_images, config.batch_size, config.noise
    seed = config.seed
    for name, model in pairs:
        if max(model.input_size) > config.image_size:
            raise ValueError(
                f"image_size={config.image_size} is smaller than model {name!r}'s input "
                f"{model.input_size}; expected >= {largest}"
            )
    fns = [_top1_fn(model) for _, model in pairs]
    bar = keras.utils.Progbar(num_images, unit_name="image") if verbose else None

    def step(answers: tuple[list, list], rows: slice) -> tuple[list, list]:
        batch = noise_images(rows.start, rows.stop, config.image_size, seed, noise)
        for k, ((_, model), fn) in enumerate(zip(pairs, fns, strict=True)):
            label, confidence = run_batch(fn, (center_crop(batch, model.input_size),), strategy)
            answers[0][k].append(label)
            answers[1][k].append(confidence)
        if bar is not None:
            bar.update(rows.stop)
        return answers

    empty = ([[] for _ in pairs], [[] for _ in pairs])
    labels, confidences = fold_batches(step, num_images, batch_size, empty)
    surveys = []
    for k, (name, model) in enumerate(pairs):
        lab = np.concatenate(labels[k]).astype(np.int64)
        conf = np.concatenate(confidences[k]).astype(np.float32)
        surveys.append(
            ModelSurvey(name, lab, conf, describe(conf), label_histogram(lab, model.class_names))
        )
        top = surveys[-1].histogram[0]
        logger.info(
            "survey %s: mean top-1 confidence %.4f, most frequent label %s (%d of %d)",
            name,
            surveys[-1].stats["mean"],
            top[1],
            top[2],
            num_images,
        )
    return SurveyResult(tuple(surveys), config, seed)
