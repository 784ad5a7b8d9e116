"""Model flags: where the reference CNN is cached and how it is trained."""

from __future__ import annotations

import os

from absl import flags

from tfool.models import AUTO_EPOCHS, SCHEDULES, TrainConfig


def define_model_flags(
    flag_values: flags.FlagValues = flags.FLAGS, model_path: str = "out/models/mnist_cnn.keras"
) -> None:
    """Defines ``--model_path``, ``--train_epochs``, ``--batch_size``, ``--learning_rate``,
    ``--lr_schedule``."""
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
    flags.DEFINE_integer(
        name="train_epochs",
        default=TrainConfig.epochs,
        lower_bound=1,
        help=(
            "Training epochs when the model has to be trained; an integer >= 1. Unset: "
            f"chosen from the data size ({AUTO_EPOCHS[0]} on full MNIST, "
            f"{AUTO_EPOCHS[1]} on the embedded sample)."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="batch_size",
        default=TrainConfig.batch_size,
        lower_bound=1,
        help="Global training batch size (images per step, over all replicas); >= 1.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        name="learning_rate",
        default=TrainConfig.learning_rate,
        lower_bound=0.0,
        help="Adam's initial learning rate for training, > 0.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        name="lr_schedule",
        default=TrainConfig.schedule,
        enum_values=list(SCHEDULES),
        help="Learning-rate schedule of training: cosine (decay to 0 over the run) or constant.",
        flag_values=flag_values,
    )

    @flags.validator(
        "model_path",
        message="--model_path must end in .keras (or .h5 / .hdf5 for an existing Keras 2 model)",
        flag_values=flag_values,
    )
    def _keras_suffix(value):
        return bool(value) and value.endswith((".keras", ".h5", ".hdf5"))

    @flags.validator(
        "learning_rate", message="--learning_rate must be > 0", flag_values=flag_values
    )
    def _positive_lr(value):
        return value > 0


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
    return TrainConfig(
        epochs=flag_values.train_epochs,
        batch_size=flag_values.batch_size,
        learning_rate=flag_values.learning_rate,
        schedule=flag_values.lr_schedule,
        seed=seed,
        verbose={0: 0, 1: 2, 2: 1}[verbose],
    )
