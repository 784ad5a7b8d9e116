"""Backworking: optimise input images from noise into confident, unlike-the-data examples.

The public API; each part lives in a private submodule: ``_config`` (the settings),
``_events`` (what callbacks see, the result), ``_prepared`` (the run's model read once,
its reference sets), ``_memory`` (the memory estimate), ``_engine`` (the compiled step and
Adam), ``_loop`` (``backwork`` and its loops), ``_results`` (the result's arrays).
"""

from tfool.backwork._config import INITS, SEMANTICS, BackworkConfig
from tfool.backwork._engine import adam_step
from tfool.backwork._events import (
    BackworkCallback,
    BackworkResult,
    SaveEvent,
    target_probabilities,
)
from tfool.backwork._loop import backwork
from tfool.backwork._memory import MemoryEstimate, estimate_memory
from tfool.backwork._prepared import Prepared, check_initial_images, prepare, reference_set
from tfool.backwork._results import load_result, result_arrays

__all__ = [
    "INITS",
    "SEMANTICS",
    "BackworkCallback",
    "BackworkConfig",
    "BackworkResult",
    "MemoryEstimate",
    "Prepared",
    "SaveEvent",
    "adam_step",
    "backwork",
    "check_initial_images",
    "estimate_memory",
    "load_result",
    "prepare",
    "reference_set",
    "result_arrays",
    "target_probabilities",
]
