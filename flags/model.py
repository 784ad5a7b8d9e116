"""Model flags: where the reference CNN is cached (``--model_path``) and how it is trained
(the flags of ``tfool.models.TrainConfig``)."""

from __future__ import annotations

import os

from absl import flags

from flags import spine
from tfool.models import TrainConfig

#: The prefix of ``TrainConfig``'s flags; its ``seed`` and ``verbose`` come from the common
#: flags ``--seed`` and ``--verbose``.
PREFIX, FROM_COMMON = "train", ("seed", "verbose")


def define_model_flags(
    flag_values: flags.FlagValues = flags.FLAGS, model_path: str = "out/models/mnist_cnn.keras"
) -> None:
    """Defines ``--model_path`` and ``TrainConfig``'s flags: ``--train_epochs``,
    ``--batch_size``, ``--learning_rate``, ``--lr_schedule``."""
    flags.DEFINE_string(
        name="model_path",
        default=model_path,
        help=(
            "Path of the classifier (.keras): your own model, or the cached reference CNN. "
            "Loaded when it exists; otherwise the reference CNN is trained on the data and "
            "saved there with a record of that data (<path>.json); a model recorded for "
            "other data, or a damaged file, is an error. Unset: out/models/<dataset>_cnn.keras "
            "(out/models/mnist_cnn.keras for MNIST)."
        ),
        flag_values=flag_values,
    )
    spine.define_config_flags(TrainConfig, PREFIX, flag_values, exclude=FROM_COMMON)

    @flags.validator(
        "model_path",
        message="--model_path must end in .keras (or .h5 / .hdf5 for an existing Keras 2 model)",
        flag_values=flag_values,
    )
    def _keras_suffix(value):
        return bool(value) and value.endswith((".keras", ".h5", ".hdf5"))


def model_path(flag_values: flags.FlagValues, dataset_name: str) -> str:
    """``--model_path`` when given, else the default cache path of ``dataset_name``'s CNN."""
    if flag_values["model_path"].present or dataset_name == "mnist":
        return flag_values.model_path
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset_name)
    return os.path.join(os.path.dirname(flag_values.model_path) or ".", f"{safe}_cnn.keras")


def train_config(flag_values: flags.FlagValues = flags.FLAGS) -> TrainConfig:
    """Converts the parsed model flags (and ``--seed``, ``--verbose``) into a ``TrainConfig``."""
    seed = flag_values["seed"].value if "seed" in flag_values else 0
    verbose = flag_values["verbose"].value if "verbose" in flag_values else 1
    return spine.config_from_flags(
        TrainConfig, PREFIX, flag_values, seed=seed, verbose={0: 0, 1: 2, 2: 1}[verbose]
    )
