"""Distribution flags shared by both run scripts: which tf.distribute strategy, GPUs, TPU."""

from __future__ import annotations

from absl import flags

from tfool.distribute import STRATEGY_NAMES, DistributionConfig


def define_distribution_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines ``--distribution_strategy``, ``--num_gpus`` and ``--tpu`` on ``flag_values``."""
    flags.DEFINE_enum(
        name="distribution_strategy",
        default="auto",
        enum_values=list(STRATEGY_NAMES),
        help=(
            "tf.distribute strategy of training, attacks and backworking: auto (a TPU when "
            "--tpu is set or this is a TPU VM, else mirrored over the GPUs when there are "
            "several, else off), off (no distribution), one_device, mirrored (every local "
            "GPU, or every logical CPU without GPUs), multi_worker_mirrored (the cluster in "
            "the TF_CONFIG environment variable) or tpu. Missing hardware is an error."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="num_gpus",
        default=None,
        lower_bound=0,
        help=(
            "GPUs to use (per worker), an integer >= 0; 0 runs on the CPU; unset: every "
            "visible GPU. Not with --distribution_strategy=off or tpu."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        name="tpu",
        default="",
        help=(
            "TPU name or grpc://host:port address for --distribution_strategy=tpu or auto; "
            "empty: $TPU_NAME when set, else the TPU attached to this VM."
        ),
        flag_values=flag_values,
    )

    @flags.multi_flags_validator(
        ["distribution_strategy", "num_gpus", "tpu"],
        message=(
            "--num_gpus does not apply to --distribution_strategy=off, > 0 not to tpu, "
            "> 1 not to one_device; --tpu only applies to tpu and auto"
        ),
        flag_values=flag_values,
    )
    def _consistent(values):
        try:
            DistributionConfig(values["distribution_strategy"], values["num_gpus"], values["tpu"])
        except ValueError:
            return False
        return True


def distribution_config(flag_values: flags.FlagValues = flags.FLAGS) -> DistributionConfig:
    """Converts the parsed distribution flags into a ``DistributionConfig``."""
    return DistributionConfig(
        name=flag_values.distribution_strategy,
        num_gpus=flag_values.num_gpus,
        tpu_address=flag_values.tpu or None,
    )
