"""ImageNet classifiers (keras.applications, EfficientNet-Lite, SqueezeNet): logits models, names."""

from tfool.imagenet._architectures import ARCHITECTURES, MODEL_NAMES
from tfool.imagenet._classes import (
    CLASS_INDEX_PATH,
    KERAS_CLASS_INDEX_MD5,
    NUM_CLASSES,
    RESOURCE_DIR,
    SYNONYMS_PATH,
    Prediction,
    build_class_resources,
    class_index,
    class_indices,
    class_names,
    class_synonyms,
    class_wnids,
    decode_predictions,
)
from tfool.imagenet._images import (
    SAMPLE_PHOTOS,
    SIXTEEN_BIT_MODES,
    grey_image,
    load_image,
    resolve_image,
    sample_photo,
)
from tfool.imagenet._load import load_imagenet_model
from tfool.imagenet._model import ImagenetModel, from_keras, unit_pixel_model
from tfool.imagenet._model_spec import ModelSpec
from tfool.imagenet._spec import Architecture, KerasApplication, OwnNetwork
from tfool.imagenet._weights import cached_weights, keras_cache_paths

__all__ = [
    "ARCHITECTURES",
    "CLASS_INDEX_PATH",
    "KERAS_CLASS_INDEX_MD5",
    "MODEL_NAMES",
    "NUM_CLASSES",
    "RESOURCE_DIR",
    "SAMPLE_PHOTOS",
    "SIXTEEN_BIT_MODES",
    "SYNONYMS_PATH",
    "Architecture",
    "ImagenetModel",
    "KerasApplication",
    "ModelSpec",
    "OwnNetwork",
    "Prediction",
    "build_class_resources",
    "cached_weights",
    "class_index",
    "class_indices",
    "class_names",
    "class_synonyms",
    "class_wnids",
    "decode_predictions",
    "from_keras",
    "grey_image",
    "keras_cache_paths",
    "load_image",
    "load_imagenet_model",
    "resolve_image",
    "sample_photo",
    "unit_pixel_model",
]
