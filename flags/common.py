"""Common flags: output folder, seed, data source, verbosity; and the effective-flags file."""

from __future__ import annotations

import dataclasses
import os

from absl import flags

from tfool import io

DATA_SOURCES = ("auto", "npz", "idx", "keras", "sample")
DATASETS = ("mnist", "fashion_mnist")


@dataclasses.dataclass(frozen=True)
class CommonConfig:
    """The common settings of every run script."""

    output_dir: str
    seed: int
    dataset: str
    data_source: str
    data_dir: str | None
    verbosity: int


def define_common_flags(
    flag_values: flags.FlagValues = flags.FLAGS, output_dir: str = "out"
) -> None:
    """Defines the common flags: output folder, seed, dataset, data source and verbosity.

    ``--output_dir``, ``--seed``, ``--dataset``, ``--data_source``, ``--data_dir``,
    ``--verbose``; ``--data_source=idx`` requires ``--data_dir``.

    Args:
        flag_values: Where to define them (a fresh ``FlagValues`` in tests).
        output_dir: The default output folder of this run script.
    """
    flags.DEFINE_string(
        name="output_dir",
        default=output_dir,
        help="Folder that receives every output file of the run; created if missing.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="seed",
        default=0,
        lower_bound=0,
        help="Seed of every random choice (weights, shuffling, noise); an integer >= 0.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        name="dataset",
        default="mnist",
        enum_values=list(DATASETS),
        help="Which dataset to load.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        name="data_source",
        default="auto",
        enum_values=list(DATA_SOURCES),
        help=(
            "Where the data comes from: auto (a local copy, else the keras download, else "
            "the embedded sample), npz (mnist.npz in --data_dir or the keras cache), idx (the "
            "four IDX files in --data_dir), keras (download) or sample (embedded 4,000/1,000 "
            "MNIST sample)."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        name="data_dir",
        default=None,
        help="Folder holding mnist.npz or the IDX files (optional).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="verbose",
        default=1,
        lower_bound=0,
        upper_bound=2,
        help="Console output: 0 quiet, 1 progress and summary, 2 also Keras' per-batch bars.",
        flag_values=flag_values,
    )

    @flags.multi_flags_validator(
        ["data_source", "data_dir"],
        message="--data_source=idx needs --data_dir, the folder with the four IDX files",
        flag_values=flag_values,
    )
    def _idx_needs_dir(values):
        return values["data_source"] != "idx" or bool(values["data_dir"])


def common_config(flag_values: flags.FlagValues = flags.FLAGS) -> CommonConfig:
    """Converts the parsed common flags into a ``CommonConfig``."""
    return CommonConfig(
        output_dir=flag_values.output_dir,
        seed=flag_values.seed,
        dataset=flag_values.dataset,
        data_source=flag_values.data_source,
        data_dir=flag_values.data_dir or None,
        verbosity=flag_values.verbose,
    )


def write_flags_file(flag_values: flags.FlagValues, output_dir: str, modules=None) -> str:
    """Writes the effective flags to ``<output_dir>/flags.cfg`` (replayable with ``--flagfile``).

    Args:
        flag_values: The parsed flags.
        output_dir: The run's output folder.
        modules: Module names whose flags to write (default: every flag defined by a module
            of our ``flags`` package or by the run scripts).

    Returns:
        The path written.
    """
    lines = []
    for module, module_flags in sorted(flag_values.flags_by_module_dict().items()):
        if modules is not None and module not in modules:
            continue
        if modules is None and not (module.startswith("flags.") or "run_" in module):
            continue
        for flag in sorted(module_flags, key=lambda f: f.name):
            lines.append(flag.serialize())
    lines = [ln for ln in lines if ln]
    path = os.path.join(output_dir, "flags.cfg")
    io.write_text(path, "\n".join(lines) + "\n")
    return path
