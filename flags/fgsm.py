"""Gradient-attack flags (prefix ``fgsm_``) of run_fgsm.py, converted into the library's
``tfool.experiments.AttackExperimentConfig``."""

from __future__ import annotations

import math

from absl import flags

from tfool import attacks, attribution
from tfool.experiments import AttackExperimentConfig

#: The modes of run_fgsm.py (``run_fgsm.MODES`` maps each to its function).
MODES = ("sweep", "project", "survey", "attribute", "photos")
_D = AttackExperimentConfig()


def parse_eps(values) -> list[float] | None:
    """Numbers >= 0 from a list flag's strings, or ``None`` when any is not one."""
    try:
        eps = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return eps if eps and all(math.isfinite(e) and e >= 0 for e in eps) else None


def define_fgsm_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the ``fgsm_*`` flags and their validators on ``flag_values``."""
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
    flags.DEFINE_list(
        name="fgsm_methods",
        default=list(attacks.DEFAULT_METHODS),
        help=(
            "Comma-separated attacks, from: " + ", ".join(attacks.METHODS) + ". random is "
            "the random-sign control of the same L-infinity size; fgm_l2 reads eps as an "
            "L2 length."
        ),
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        name="fgsm_eps",
        default=[f"{e:g}" for e in _D.eps_values],
        help="Comma-separated attack sizes in pixel units of the [0, 1] range, each >= 0.",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        name="fgsm_targeted",
        default=False,
        help="Move every image toward a target class (--fgsm_target_class) instead of away "
        "from its predicted class.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="fgsm_target_class",
        default=None,
        lower_bound=0,
        help="Target class of a targeted run, an index >= 0; unset: each image's least "
        "likely class (Kurakin et al.'s l.l. attacks). Needs --fgsm_targeted.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="fgsm_steps",
        default=_D.steps,
        lower_bound=0,
        help="Iterations of bim and pgd, >= 0; 0 uses Kurakin et al.'s rule "
        "min(255 eps + 4, 1.25 * 255 eps) steps of 1/255 per eps.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        name="fgsm_step_size",
        default=0.0,
        lower_bound=0.0,
        help="Step of bim and pgd in pixel units, >= 0; 0 picks it: 2.5 * eps / steps, or "
        "1/255 with Kurakin's step count.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="fgsm_num_images",
        default=None,
        lower_bound=1,
        help="Test images to attack (the first ones), >= 1; unset: the whole test set.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="fgsm_batch_size",
        default=_D.batch_size,
        lower_bound=1,
        help="Images per compiled attack step (the global batch under a strategy), >= 1.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        name="fgsm_example_eps",
        default=_D.example_eps,
        lower_bound=0.0,
        help="Attack size of examples.png, of the gradient-sign image and of the FGSM images "
        "of attribution.png (--fgsm_mode=attribute), >= 0.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        name="fgsm_num_examples",
        default=_D.num_examples,
        lower_bound=1,
        upper_bound=50,
        help="Correctly classified test images shown in examples.png, 1..50.",
        flag_values=flag_values,
    )

    flags.DEFINE_integer(
        name="fgsm_attribute_num_images",
        default=_D.attribute_num_images,
        lower_bound=1,
        upper_bound=20,
        help="Correctly classified test images of attribution.png, each shown beside its FGSM "
        "counterpart, 1..20.",
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        name="fgsm_attribute_methods",
        default=list(attribution.DEFAULT_METHODS),
        help="Comma-separated attribution methods of attribution.png, in column order, from: "
        + ", ".join(attribution.ALL_METHODS)
        + ".",
        flag_values=flag_values,
    )

    @flags.validator(
        "fgsm_methods",
        message="--fgsm_methods must list distinct names from " + ", ".join(attacks.METHODS),
        flag_values=flag_values,
    )
    def _known_methods(values):
        return (
            bool(values) and len(set(values)) == len(values) and set(values) <= set(attacks.METHODS)
        )

    @flags.validator(
        "fgsm_attribute_methods",
        message="--fgsm_attribute_methods must list distinct names from "
        + ", ".join(attribution.ALL_METHODS),
        flag_values=flag_values,
    )
    def _known_attribution_methods(values):
        return (
            bool(values)
            and len(set(values)) == len(values)
            and set(values) <= set(attribution.ALL_METHODS)
        )

    @flags.validator(
        "fgsm_eps",
        message="--fgsm_eps must be a non-empty comma-separated list of numbers >= 0",
        flag_values=flag_values,
    )
    def _valid_eps(values):
        return parse_eps(values) is not None

    @flags.multi_flags_validator(
        ["fgsm_targeted", "fgsm_target_class"],
        message="--fgsm_target_class needs --fgsm_targeted",
        flag_values=flag_values,
    )
    def _target_needs_targeted(values):
        return values["fgsm_target_class"] is None or values["fgsm_targeted"]


def flag_error(err: ValueError) -> ValueError:
    """The library's ``<field>=<value> ...`` message of an ``AttackExperimentConfig`` field,
    naming the ``--fgsm_*`` flag that set it instead."""
    message = str(err).replace("eps_values=", "fgsm_eps=", 1)
    return ValueError("--" + (message if message.startswith("fgsm_") else f"fgsm_{message}"))


def fgsm_config(flag_values: flags.FlagValues = flags.FLAGS) -> AttackExperimentConfig:
    """Converts the parsed ``fgsm_*`` flags into an ``AttackExperimentConfig``.

    Raises:
        ValueError: a value the flag parsers let through (nan, inf) that the config
            refuses; the message names the flag.
    """
    try:
        return _fgsm_config(flag_values)
    except ValueError as err:
        raise flag_error(err) from err


def _fgsm_config(flag_values: flags.FlagValues) -> AttackExperimentConfig:
    return AttackExperimentConfig(
        methods=tuple(flag_values.fgsm_methods),
        eps_values=tuple(parse_eps(flag_values.fgsm_eps)),
        targeted=flag_values.fgsm_targeted,
        target_class=flag_values.fgsm_target_class,
        steps=flag_values.fgsm_steps or None,
        step_size=flag_values.fgsm_step_size or None,
        num_images=flag_values.fgsm_num_images,
        batch_size=flag_values.fgsm_batch_size,
        example_eps=flag_values.fgsm_example_eps,
        num_examples=flag_values.fgsm_num_examples,
        attribute_num_images=flag_values.fgsm_attribute_num_images,
        attribute_methods=tuple(flag_values.fgsm_attribute_methods),
    )
