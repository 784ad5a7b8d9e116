"""Distribution flags shared by both run scripts: the flags of
``tfool.distribute.DistributionConfig`` (``--distribution_strategy``, ``--num_gpus``,
``--tpu``)."""

from __future__ import annotations

from absl import flags

from flags import spine
from tfool.distribute import DistributionConfig


def define_distribution_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines ``--distribution_strategy``, ``--num_gpus`` and ``--tpu`` on ``flag_values``;
    ``DistributionConfig`` refuses the combinations it does not take at parse time."""
    spine.define_config_flags(DistributionConfig, "", flag_values)


def distribution_config(flag_values: flags.FlagValues = flags.FLAGS) -> DistributionConfig:
    """Converts the parsed distribution flags into a ``DistributionConfig``."""
    return spine.config_from_flags(DistributionConfig, "", flag_values)
