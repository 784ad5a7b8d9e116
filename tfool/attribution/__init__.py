"""Attributions: which input pixels a classifier's decision rests on (Captum's methods in TF2).

The attribution table ``ATTRIBUTIONS`` (one ``AttributionSpec`` per method: its function,
its default options, the arguments it fixes) and ``AttributionConfig`` (the methods, their
options, the score, the seed) drive ``attribute_all``, which runs several methods at once.
"""

from tfool.attribution._checks import ModelFn
from tfool.attribution._compiled import SCORES
from tfool.attribution._gradients import gradient_x_input, saliency, salient_features
from tfool.attribution._integrated import IG_METHODS, ig_steps, integrated_gradients
from tfool.attribution._noise_tunnel import NT_TYPES, noise_tunnel
from tfool.attribution._occlusion import occlusion, occlusion_windows
from tfool.attribution._registry import (
    ALL_METHODS,
    ATTRIBUTIONS,
    DEFAULT_METHODS,
    AttributionConfig,
    AttributionSpec,
    attribute_all,
    default_options,
)
from tfool.attribution._training import TrainingAttribution

__all__ = [
    "ALL_METHODS",
    "ATTRIBUTIONS",
    "DEFAULT_METHODS",
    "IG_METHODS",
    "NT_TYPES",
    "SCORES",
    "AttributionConfig",
    "AttributionSpec",
    "ModelFn",
    "TrainingAttribution",
    "attribute_all",
    "default_options",
    "gradient_x_input",
    "ig_steps",
    "integrated_gradients",
    "noise_tunnel",
    "occlusion",
    "occlusion_windows",
    "saliency",
    "salient_features",
]
