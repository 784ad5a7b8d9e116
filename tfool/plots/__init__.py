"""Figures: image grids, curves and heat maps (the only tfool package that touches matplotlib).

The public names live here; the private submodules hold the image grids (``_grid``),
the figures of attacks and ImageNet experiments (``_experiments``), of retraining and
the stress test (``_retrain``) and the attribution heat maps (``_attribution``).
"""

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

from tfool.plots._attribution import (  # noqa: E402
    ATTR_SIGNS,
    ATTR_VIEWS,
    attribution_comparison_figure,
    normalize_attribution,
    save_gif,
    training_attribution_frames,
    visualize_image_attr,
)
from tfool.plots._experiments import (  # noqa: E402
    accuracy_vs_eps,
    attack_examples,
    photo_fgsm_grid,
    projection_grid,
    survey_histogram,
)
from tfool.plots._grid import close, image_grid, probability_grid  # noqa: E402
from tfool.plots._retrain import (  # noqa: E402
    MODE_COLOURS,
    STRESS_STARTS,
    backwork_scaling,
    retrain_comparison,
    stress_figure,
)

__all__ = [
    "ATTR_SIGNS",
    "ATTR_VIEWS",
    "MODE_COLOURS",
    "STRESS_STARTS",
    "accuracy_vs_eps",
    "attack_examples",
    "attribution_comparison_figure",
    "backwork_scaling",
    "close",
    "image_grid",
    "normalize_attribution",
    "photo_fgsm_grid",
    "probability_grid",
    "projection_grid",
    "retrain_comparison",
    "save_gif",
    "stress_figure",
    "survey_histogram",
    "training_attribution_frames",
    "visualize_image_attr",
]
