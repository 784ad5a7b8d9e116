"""Gradient-attack flags (prefix ``fgsm_``) of run_fgsm.py: ``--fgsm_mode`` and the flags of
``tfool.experiments.AttackExperimentConfig``, whose ``seed`` is ``--seed``."""

from __future__ import annotations

from absl import flags

from flags import spine
from tfool.experiments import AttackExperimentConfig

#: The modes of run_fgsm.py (``run_fgsm.MODES`` maps each to its function).
MODES = ("sweep", "project", "survey", "attribute", "photos")
#: The prefix of ``AttackExperimentConfig``'s flags; its seed is the common ``--seed``.
PREFIX, FROM_COMMON = "fgsm", ("seed",)


def define_fgsm_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines ``--fgsm_mode`` and the flags of ``AttackExperimentConfig`` on ``flag_values``."""
    flags.DEFINE_enum(
        name="fgsm_mode",
        default="sweep",
        enum_values=list(MODES),
        help=(
            "What run_fgsm.py does: sweep (accuracy of the MNIST CNN under each attack and "
            "eps), project (gradient projection of ImageNet classes onto an image, see "
            "--fgsm_project_*), survey (ImageNet classifiers on random noise, see "
            "--fgsm_survey_*), attribute (every attribution method on test images and "
            "their FGSM counterparts) or photos (FGSM and attributions on ImageNet photos "
            "with --fgsm_imagenet_model, see --fgsm_photo*)."
        ),
        flag_values=flag_values,
    )
    spine.define_config_flags(AttackExperimentConfig, PREFIX, flag_values, exclude=FROM_COMMON)


def fgsm_config(flag_values: flags.FlagValues = flags.FLAGS) -> AttackExperimentConfig:
    """Converts the parsed ``fgsm_*`` flags (and ``--seed``) into an ``AttackExperimentConfig``.

    Raises:
        ValueError: a value the config refuses; the message names the flag.
    """
    seed = flag_values["seed"].value if "seed" in flag_values else 0
    return spine.config_from_flags(AttackExperimentConfig, PREFIX, flag_values, seed=seed)


def flag_error(err: ValueError, flag_values: flags.FlagValues = flags.FLAGS) -> ValueError:
    """The library's ``<field>=<value> ...`` message of an ``AttackExperimentConfig`` field
    (``check_data``'s), naming the ``--fgsm_*`` flag that set it instead."""
    return spine.flag_error(err, AttackExperimentConfig, PREFIX, flag_values)
