"""What every benchmark shares: the repository on the path, data and model flags and
loading them, the load average, timing, and writing results atomically.

Each benchmark in this folder is an absl app: a module docstring saying what it measures
and how to run it, ``define_flags()``, ``main(argv)``, and ``import benchlib`` first.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: import the tfool next to this folder
    sys.path.insert(0, str(REPO))

import keras  # noqa: E402
from absl import flags  # noqa: E402

from tfool import data as tfool_data  # noqa: E402
from tfool import io, models  # noqa: E402

#: Full MNIST as this workplace ships it, beside the repository.
FULL_MNIST = REPO.parent / "shared" / "data" / "mnist"


def define_data_flags(fv: flags.FlagValues, model: bool = True) -> None:
    """``--data_source`` (default idx), ``--data_dir`` (default the shared full MNIST) and,
    with ``model``, ``--model_path`` (default: a fresh reference CNN)."""
    flags.DEFINE_enum(
        "data_source",
        "idx",
        ["idx", "npz", "keras", "sample", "auto"],
        "MNIST source.",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "data_dir",
        str(FULL_MNIST),
        "Folder of the MNIST files for the idx/npz sources.",
        flag_values=fv,
    )
    if model:
        flags.DEFINE_string(
            "model_path",
            None,
            "A trained .keras CNN (default: fresh weights; timing does not depend on them).",
            flag_values=fv,
        )


def load_data(fv: flags.FlagValues) -> tfool_data.Dataset:
    """The MNIST the flags name (``--data_dir`` only for the file sources)."""
    file_source = fv.data_source in ("idx", "npz")
    return tfool_data.load_mnist(fv.data_source, fv.data_dir if file_source else None)


def load_model(fv: flags.FlagValues, seed: int = 0) -> keras.Model:
    """The CNN at ``--model_path``, or a fresh reference CNN seeded with ``seed``."""
    if fv.model_path:
        return models.load_model(fv.model_path)
    keras.utils.set_random_seed(seed)
    return models.build_mnist_cnn(seed=seed)


def write_results(path: str | None, results: dict) -> None:
    """Writes a benchmark's figures to the JSON file ``path`` (nothing when empty)."""
    if path:
        io.write_json(path, results)
        print(f"wrote {path}")


def load_average() -> float:
    """The machine's load average over the last minute (other work skews timings)."""
    return os.getloadavg()[0]


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
