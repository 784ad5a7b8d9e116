"""Datasets: MNIST and Fashion-MNIST, or your own images from arrays, an .npz file or a folder.

The public names live here; the private submodules hold the ``Dataset`` and its checks
(``_dataset``), the MNIST and Fashion-MNIST sources (``_mnist``) and data of your own
with ``load_dataset`` (``_own``).
"""

from tfool.data._dataset import ARRAY_KEYS, PIXELS_EXPECTED, Dataset, ImageClassSet
from tfool.data._mnist import (
    FASHION_CLASS_NAMES,
    IDX_NAMES,
    MNIST_CLASS_NAMES,
    MNIST_SHAPE,
    SAMPLE_PATH,
    SOURCES,
    build_sample_npz,
    load_fashion_mnist,
    load_mnist,
    network_available,
    read_idx,
    read_npz,
)
from tfool.data._own import (
    DATA_DIR_NEEDED,
    DATASETS,
    IMAGE_EXTENSIONS,
    from_arrays,
    load_arrays,
    load_dataset,
    load_image_folder,
)

__all__ = [
    "ARRAY_KEYS",
    "DATASETS",
    "DATA_DIR_NEEDED",
    "FASHION_CLASS_NAMES",
    "IDX_NAMES",
    "IMAGE_EXTENSIONS",
    "MNIST_CLASS_NAMES",
    "MNIST_SHAPE",
    "PIXELS_EXPECTED",
    "SAMPLE_PATH",
    "SOURCES",
    "Dataset",
    "ImageClassSet",
    "build_sample_npz",
    "from_arrays",
    "load_arrays",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist",
    "network_available",
    "read_idx",
    "read_npz",
]
