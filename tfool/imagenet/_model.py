"""An ImageNet classifier as a model from RGB pixels 0-255 to logits: ``ImagenetModel``."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfool._tf import fold_batches
from tfool.imagenet._architectures import preprocess_input
from tfool.imagenet._classes import NUM_CLASSES, class_index, class_names

logger = logging.getLogger("tfool.imagenet")


def _as_tensor_fn(fn: Callable) -> Callable[[tf.Tensor], tf.Tensor]:
    """Wraps a keras ``preprocess_input`` so it never edits a NumPy array in place."""

    def preprocess(pixels):
        return fn(tf.convert_to_tensor(pixels, tf.float32))

    preprocess.__name__ = f"preprocess_{getattr(fn, '__module__', 'fn').rsplit('.', 1)[-1]}"
    return preprocess


@dataclasses.dataclass(frozen=True, eq=False)
class ImagenetModel:
    """An ImageNet classifier that takes RGB pixels 0-255 and returns logits.

    Attributes:
        model: The Keras classifier; it takes preprocessed images and returns logits.
        preprocess: Pixels (float, 0-255, RGB, ``[N, H, W, 3]``) to the model's input:
            the architecture's own ``preprocess_input`` (differentiable, TensorFlow ops).
        input_size: ``(height, width)`` of the model's input.
        name: The architecture (``vgg16``).
        class_names: One name per output.
        weights: Where the weights came from: ``imagenet``, ``none`` or a file path.
    """

    model: keras.Model
    preprocess: Callable[[tf.Tensor], tf.Tensor]
    input_size: tuple[int, int]
    name: str
    class_names: tuple[str, ...]
    weights: str = "imagenet"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(height, width, 3)``."""
        return (*self.input_size, 3)

    def logits(self, pixels) -> tf.Tensor:
        """Logits of a batch of pixel images (0-255, ``[N, H, W, 3]``); differentiable."""
        return self.model(self.preprocess(pixels), training=False)

    def probabilities(self, pixels) -> tf.Tensor:
        """Softmax of ``logits``."""
        return tf.nn.softmax(self.logits(pixels), axis=-1)

    def predict(self, pixels: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Class probabilities of ``[N, H, W, 3]`` pixel images, in batches, as NumPy."""
        pixels = np.asarray(pixels, np.float32)
        if pixels.ndim != 4 or pixels.shape[1:] != self.image_shape:
            raise ValueError(f"pixels have shape {pixels.shape}, expected [N, {self.image_shape}]")

        def step(out: list, rows: slice) -> list:
            out.append(self.probabilities(pixels[rows]).numpy())
            return out

        out = fold_batches(step, len(pixels), batch_size, [])
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def class_index(self, label: int | str) -> int:
        """``tfool.imagenet.class_index`` (names need the 1,000 ImageNet outputs)."""
        if isinstance(label, str) and len(self.class_names) != NUM_CLASSES:
            if label in self.class_names:
                return self.class_names.index(label)
            raise ValueError(f"class name {label!r} is not one of {self.name}'s classes")
        index = class_index(label)
        if index >= len(self.class_names):
            raise ValueError(f"class index {index} is outside 0..{len(self.class_names) - 1}")
        return index


def input_size_of(model: keras.Model, where: str) -> tuple[int, int]:
    """``(height, width)`` of a model's RGB input, or a ``ValueError`` naming ``where``."""
    shape = tuple(model.inputs[0].shape[1:]) if model.inputs else ()
    if len(shape) != 3 or shape[-1] != 3 or None in shape[:2]:
        raise ValueError(f"{where} takes inputs of shape {shape}, expected (H, W, 3)")
    return int(shape[0]), int(shape[1])


def from_keras(
    model: keras.Model,
    name: str,
    preprocess: str | Callable | None = None,
    names: Sequence[str] | None = None,
    weights: str = "custom",
) -> ImagenetModel:
    """Wraps your own Keras classifier (RGB images in, logits out) as an ``ImagenetModel``.

    Args:
        model: A built classifier with input ``(H, W, 3)`` and logits out.
        name: Its name in reports.
        preprocess: Pixels 0-255 to the model's input: an architecture name (its
            ``preprocess_input``, e.g. ``"vgg16"``), a function of a float32 tensor, or
            ``None`` when the model takes pixels 0-255 itself.
        names: One name per output (default: the ImageNet names for 1,000 outputs,
            else ``"0"``, ``"1"``, ...).
        weights: Where the weights came from, for reports.

    Returns:
        An ``ImagenetModel``.
    """
    size = input_size_of(model, f"model {model.name!r}")
    outputs = int(model.outputs[0].shape[-1])
    if names is None:
        names = class_names() if outputs == NUM_CLASSES else tuple(str(i) for i in range(outputs))
    if len(names) != outputs:
        raise ValueError(
            f"names has {len(names)} entries but model {model.name!r} has {outputs} outputs"
        )
    if preprocess is None:
        fn = _as_tensor_fn(lambda x: x)
    elif isinstance(preprocess, str):
        fn = _as_tensor_fn(preprocess_input(preprocess))
    elif callable(preprocess):
        fn = _as_tensor_fn(preprocess)
    else:
        raise ValueError(
            f"preprocess={preprocess!r} must be None, an architecture name or a function"
        )
    return ImagenetModel(model, fn, size, name, tuple(names), weights)


def unit_pixel_model(im: ImagenetModel) -> keras.Model:
    """A functional model from images in [0, 1] to the classifier's logits.

    The images are scaled to 0-255 and passed through the architecture's own
    ``preprocess_input`` inside the model, so optimisers (backworking, rubbish images) can
    work on [0, 1] images as the rubbish-image post does.

    Args:
        im: An ``ImagenetModel``.

    Returns:
        A ``keras.Model`` named ``<name>_unit_pixels`` whose output layer is ``logits``.
    """
    inputs = keras.Input(shape=im.image_shape, name="inputs")
    pixels = keras.layers.Rescaling(255.0, name="to_pixels")(inputs)
    x = keras.layers.Lambda(im.preprocess, name="preprocess")(pixels)
    logits = keras.layers.Identity(name="logits")(im.model(x, training=False))
    return keras.Model(inputs, logits, name=f"{im.name}_unit_pixels")
