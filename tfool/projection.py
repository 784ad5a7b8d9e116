"""Gradient projection: push a picture toward chosen ImageNet classes in pixel space."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfool import _tf
from tfool._tf import run_batch
from tfool.config import setting
from tfool.imagenet import (
    ImagenetModel,
    ModelSpec,
    Prediction,
    class_indices,
    decode_predictions,
    grey_image,
    load_image,
    resolve_image,
)

logger = logging.getLogger(__name__)

NORMALIZATIONS = ("rms", "max", "sign")
#: The word for a plain grey start image.
GREY = "grey"
__all__ = ["ProjectionConfig", "ProjectionExperiment", "ProjectionResult", "project"]


@dataclasses.dataclass(frozen=True)
class ProjectionConfig:
    """How to project (the keyword arguments of ``project``).

    Attributes:
        steps: Most gradient steps per target, an integer >= 1.
        step_size: Pixels (0-255 scale) moved per step along the normalised gradient; > 0.
        eps: L-infinity budget around the start image, in pixels (0-255 scale); every pixel
            stays within this distance of its start value. ``None`` (0 on the command
            line): no budget.
        threshold: A target stops once the model gives it this probability; in (0, 1].
        normalize: Per-step gradient normalisation: rms (divide by its root mean square,
            as in Chollet's Keras filter-visualisation post), max (divide by its largest
            magnitude) or sign (FGSM's sign).
    """

    steps: int = 100
    step_size: float = 1.0
    eps: float | None = setting(None, none=0)
    threshold: float = 0.99
    normalize: str = setting("rms", choices=NORMALIZATIONS)

    def __post_init__(self):
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps={self.steps} must be an integer >= 1")
        if not (np.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"step_size={self.step_size} must be a positive number of pixels")
        if self.eps is not None and not (np.isfinite(self.eps) and self.eps > 0):
            raise ValueError(
                f"eps={self.eps} must be None (no budget) or a positive number of pixels"
            )
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold={self.threshold} must lie in (0, 1]")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize={self.normalize!r} must be one of {list(NORMALIZATIONS)}")


@dataclasses.dataclass(frozen=True)
class ProjectionExperiment:
    """Gradient projection of ImageNet classes onto one image (run_fgsm.py's project mode).

    Attributes:
        model: The classifier (a ``tfool.imagenet.ModelSpec``).
        image: Start image of the projection: the path of a PNG/JPEG file (resized to the
            model's input), the name of a scikit-image sample photo (chelsea, coffee,
            camera...; needs scikit-image), or ``None`` or grey for a plain grey image
            (pixel value 128).
        targets: Target classes, each an index 0-999, a keras class name
            (great_white_shark; spaces work too), a WordNet synonym or a WordNet id
            (n01484850); an unknown name is an error that lists close matches.
        projection: The projection settings (a ``ProjectionConfig``).
    """

    model: ModelSpec = ModelSpec()
    image: str | None = None
    targets: tuple[str | int, ...] = ("Indian_elephant", "envelope")
    projection: ProjectionConfig = ProjectionConfig()

    def __post_init__(self):
        if isinstance(self.image, str) and self.image.strip().lower() == GREY:
            object.__setattr__(self, "image", None)
        object.__setattr__(self, "targets", tuple(self.targets))
        if not self.targets or not all(str(t).strip() for t in self.targets):
            raise ValueError(f"targets={self.targets!r} needs at least one class")

    def image_path(self) -> str | None:
        """The start image's path (a sample photo's name resolved); ``None``: grey."""
        return None if self.image is None else resolve_image(self.image)

    def target_indices(self) -> tuple[int, ...]:
        """The target class indices.

        Raises:
            ValueError: a name that is not an ImageNet class (with close matches).
        """
        return class_indices(self.targets)


@dataclasses.dataclass(frozen=True, eq=False)
class ProjectionResult:
    """What a projection produced, one row per target class.

    Attributes:
        original: The start image, float32 pixels 0-255, ``[H, W, 3]``.
        images: The projected images, ``[T, H, W, 3]``.
        perturbations: ``images - original``.
        targets: The target class indices.
        target_names: Their names.
        top5_before: The model's top-5 for the start image.
        top5_after: The top-5 for each projected image.
        target_probs: ``[S + 1, T]``: the target probability before step ``s`` (row 0: the
            start image; the last row: the final images). A target that has reached the
            threshold stops moving, so its column stays flat.
        steps_taken: Steps applied to each target (``<= config.steps``).
        reached: Whether each target reached ``config.threshold``.
        config: The settings used.
        model_name: The model's name.
    """

    original: np.ndarray
    images: np.ndarray
    perturbations: np.ndarray
    targets: tuple[int, ...]
    target_names: tuple[str, ...]
    top5_before: tuple[Prediction, ...]
    top5_after: tuple[tuple[Prediction, ...], ...]
    target_probs: np.ndarray
    steps_taken: np.ndarray
    reached: np.ndarray
    config: ProjectionConfig
    model_name: str

    @property
    def final_probs(self) -> np.ndarray:
        """The target probability of every projected image, ``[T]``."""
        return self.target_probs[-1]

    @property
    def linf(self) -> np.ndarray:
        """The largest absolute pixel change of every projected image, ``[T]``."""
        return np.abs(self.perturbations).reshape(len(self.targets), -1).max(axis=1)

    @property
    def l2(self) -> np.ndarray:
        """The L2 length of every perturbation in pixels (0-255 units), ``[T]``."""
        flat = self.perturbations.reshape(len(self.targets), -1).astype(np.float64)
        return np.sqrt((flat**2).sum(axis=1))


def _start_image(model: ImagenetModel, image) -> np.ndarray:
    if image is None:
        return grey_image(model.input_size)
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, model.input_size)
    array = np.asarray(image, np.float32)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.shape != model.image_shape:
        raise ValueError(
            f"image has shape {np.asarray(image).shape}, expected {model.image_shape} (RGB pixels "
            f"0-255 at {model.name}'s input size); read files with load_image(path, size)"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("image has non-finite pixels")
    return array


def _normalise(grad: tf.Tensor, normalize: str) -> tf.Tensor:
    axes = [1, 2, 3]
    if normalize == "sign":
        return tf.sign(grad)
    if normalize == "max":
        scale = tf.reduce_max(tf.abs(grad), axis=axes, keepdims=True)
    else:
        scale = tf.sqrt(tf.reduce_mean(tf.square(grad), axis=axes, keepdims=True))
    return tf.math.divide_no_nan(grad, scale)


def _make_step(model: ImagenetModel, config: ProjectionConfig, clip_min: float, clip_max: float):
    step_size = tf.constant(config.step_size, tf.float32)
    threshold = tf.constant(config.threshold, tf.float32)
    eps = None if config.eps is None else tf.constant(config.eps, tf.float32)

    @tf.function
    def step(x, x0, targets):
        """One ascent step on log p(target) for the rows still below the threshold.

        Under the per-image normalisation, ascending log p moves exactly as ascending p.
        Returns the new images and the target probabilities of the images given.
        """

        def target_log_probs(points):  # rows are independent: one gradient for all
            log_probs = tf.nn.log_softmax(model.logits(points), axis=-1)
            return tf.gather(log_probs, targets, batch_dims=1)

        grad, target_log_probs = _tf.input_gradient(target_log_probs, x)
        probs = tf.exp(target_log_probs)
        moved = x + step_size * _normalise(grad, config.normalize)
        if eps is not None:
            moved = tf.clip_by_value(moved, x0 - eps, x0 + eps)
        moved = tf.clip_by_value(moved, clip_min, clip_max)
        active = probs < threshold
        return tf.where(active[:, None, None, None], moved, x), probs, active

    return step


def _checked_inputs(
    model: ImagenetModel, image, target, config: ProjectionConfig, clip_min: float, clip_max: float
) -> tuple[tuple[int, ...], np.ndarray]:
    """The target class indices and the start image of ``project``, its arguments checked."""
    if not isinstance(config, ProjectionConfig):
        raise ValueError(f"config is a {type(config).__name__}, expected a ProjectionConfig")
    if not clip_min < clip_max:
        raise ValueError(f"clip_min={clip_min} must be below clip_max={clip_max}")
    labels = [target] if isinstance(target, (str, int, np.integer)) else list(target)
    if not labels:
        raise ValueError("target is empty; expected at least one class")
    targets = tuple(model.class_index(label) for label in labels)
    original = _start_image(model, image)
    if original.min() < clip_min or original.max() > clip_max:
        raise ValueError(
            f"image pixels span [{original.min():g}, {original.max():g}], outside "
            f"[clip_min, clip_max] = [{clip_min:g}, {clip_max:g}]; expected pixels 0-255"
        )
    if original.max() <= 1.0:
        logger.warning("image pixels all lie in [0, 1]: projection expects pixels 0-255")
    return targets, original


def project(
    model: ImagenetModel,
    image: str | os.PathLike | np.ndarray | None,
    target: int | str | Sequence[int | str],
    config: ProjectionConfig = ProjectionConfig(),
    *,
    clip_min: float = 0.0,
    clip_max: float = 255.0,
    strategy: tf.distribute.Strategy | None = None,
    verbose: int = 0,
) -> ProjectionResult:
    """Projects the gradient of target classes onto a picture until the model reports them.

    The model's weights stay frozen; the image (pixels 0-255, through the model's own
    preprocessing) takes steps along the normalised gradient of the target's log
    probability. All targets run together in one batch, each from the same start image,
    and each stops once its probability reaches ``threshold``, or after ``steps``.

    Args:
        model: An ``ImagenetModel`` (``tfool.imagenet.load_imagenet_model``).
        image: A PNG/JPEG path (resized to the model's input), a ``[H, W, 3]`` (or
            ``[H, W]``) array of pixels 0-255 at the model's input size, or ``None`` for a
            plain grey image (``grey_image``).
        target: One class or several, each an index or a name (``"envelope"``).
        config: Steps, step size, budget, threshold and normalisation
            (``ProjectionConfig``).
        clip_min: Lowest pixel value.
        clip_max: Highest pixel value.
        strategy: Optional ``tf.distribute`` strategy (model built in its scope); the
            batch of targets is split over its replicas at every step.
        verbose: 1 shows a progress bar.

    Returns:
        A ``ProjectionResult``.

    Raises:
        ValueError: bad settings, an unknown class (with suggestions) or a bad image.
        FileNotFoundError: an image path that does not exist.
    """
    targets, original = _checked_inputs(model, image, target, config, clip_min, clip_max)
    step = _make_step(model, config, float(clip_min), float(clip_max))
    x0 = np.repeat(original[None], len(targets), axis=0)
    target_array = np.asarray(targets, np.int32)
    x = x0
    history, taken, ran_out = [], np.zeros(len(targets), np.int64), False
    bar = keras.utils.Progbar(config.steps, unit_name="step") if verbose else None
    for i in range(config.steps):
        x, probs, active = run_batch(step, (x, x0, target_array), strategy)
        history.append(probs)
        if not active.any():
            break  # every target reached the threshold: x did not move
        taken += active
        if bar is not None:
            bar.update(i + 1, [("mean target p", float(np.mean(history[-1])))])
        ran_out = i + 1 == config.steps
    final = model.probabilities(x).numpy()
    final_target = final[np.arange(len(targets)), list(targets)]
    if ran_out:  # the last step's move has not been measured yet
        history.append(final_target)
    before = model.probabilities(original[None]).numpy()
    images = x
    names = tuple(model.class_names[t] for t in targets)
    result = ProjectionResult(
        original=original,
        images=images,
        perturbations=images - original[None],
        targets=targets,
        target_names=names,
        top5_before=decode_predictions(before, 5, model.class_names)[0],
        top5_after=decode_predictions(final, 5, model.class_names),
        target_probs=np.stack(history).astype(np.float32),
        steps_taken=taken,
        reached=final_target >= config.threshold,
        config=config,
        model_name=model.name,
    )
    for name, p, n in zip(names, final_target, taken, strict=True):
        logger.info("projection %s -> %s: p = %.4f after %d steps", model.name, name, p, n)
    return result
