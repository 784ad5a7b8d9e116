"""Retraining with backworked negatives: rounds of backwork, augment, retrain and measure.

The rounds (``retrain_rounds``) with their settings (``RetrainConfig``), the augmented
training set (``augment_with_negatives``), model surgery (``copy_model``,
``grow_output_layer``), what a round measures (``RoundRecord``, ``measure_fooling``), the
round store (``check_folder``, ``read_state``, ``state.json``) and the comparison of modes
(``compare_modes``).
"""

from tfool.retrain._augment import (
    NEGATIVE_CLASS_NAME,
    ORIGIN_DATA,
    ORIGIN_NEGATIVE,
    ORIGIN_NOISE,
    ORIGIN_ZERO,
    AugmentedData,
    augment_with_negatives,
    negative_class_name,
)
from tfool.retrain._compare import compare_modes
from tfool.retrain._config import DEFAULT_TRAIN_CONFIG, MODES, RetrainConfig
from tfool.retrain._measure import (
    FoolingStats,
    NegativeConfidence,
    RoundRecord,
    fooling_config,
    measure_fooling,
    top_digit_confidence,
)
from tfool.retrain._rounds import RetrainCallback, RetrainResult, retrain_rounds
from tfool.retrain._store import (
    STATE_FILE,
    STATE_VERSION,
    FolderConflict,
    check_folder,
    read_state,
    weights_fingerprint,
)
from tfool.retrain._surgery import copy_model, grow_output_layer

__all__ = [
    "DEFAULT_TRAIN_CONFIG",
    "MODES",
    "NEGATIVE_CLASS_NAME",
    "ORIGIN_DATA",
    "ORIGIN_NEGATIVE",
    "ORIGIN_NOISE",
    "ORIGIN_ZERO",
    "STATE_FILE",
    "STATE_VERSION",
    "AugmentedData",
    "FolderConflict",
    "FoolingStats",
    "NegativeConfidence",
    "RetrainCallback",
    "RetrainConfig",
    "RetrainResult",
    "RoundRecord",
    "augment_with_negatives",
    "check_folder",
    "compare_modes",
    "copy_model",
    "fooling_config",
    "grow_output_layer",
    "measure_fooling",
    "negative_class_name",
    "read_state",
    "retrain_rounds",
    "top_digit_confidence",
    "weights_fingerprint",
]
