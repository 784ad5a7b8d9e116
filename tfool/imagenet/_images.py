"""Images for the ImageNet classifiers: image files, grey images, scikit-image's photos."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

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


def image_size(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    """``size`` (a side or ``(height, width)``) as a pair, or a ``ValueError`` naming ``name``."""
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
    return np.full((*image_size(size), 3), value, np.float32)


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
    height, width = image_size(size)
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
