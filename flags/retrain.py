"""Retraining and stress-test flags: the flags of ``tfool.retrain.RetrainConfig``
(``--retrain_<field>``) and of ``tfool.stress.StressConfig`` (``--stress_<field>``).

``flags.spine`` derives one flag per field from the two configs, which define and check
every setting. Written here: ``--retrain_mode``, a list of modes (one ``RetrainConfig``
each), ``--retrain_stress`` (whether run_backwork.py runs the stress test), and the checks
across flags.
"""

from __future__ import annotations

from absl import flags

from flags import spine
from tfool.retrain import MODES, RetrainConfig
from tfool.stress import StressConfig

#: The prefixes of ``RetrainConfig``'s and ``StressConfig``'s flags.
PREFIX, STRESS_PREFIX = "retrain", "stress"
#: ``RetrainConfig``'s field without a derived flag: ``--retrain_mode`` lists several.
NOT_DERIVED = ("mode",)


def define_retrain_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the ``--retrain_*`` and ``--stress_*`` flags on ``flag_values``; each
    field's own checks are its config's, run at parse time."""
    fv = {"flag_values": flag_values}
    spine.define_config_flags(RetrainConfig, PREFIX, flag_values, exclude=NOT_DERIVED)
    flags.DEFINE_list(
        name="retrain_mode",
        default=[RetrainConfig().mode],
        help="Comma-separated modes, each run in <output_dir>/retrain/<mode>/ from the same "
        "model: uniform (negatives get 1/C for each of the C classes, the MNIST post), extra_class "
        "(a new 'negative' class, Nguyen et al. 2015), control (the same rounds with nothing "
        "added), adversarial (nothing added, every batch replaced by its FGSM/PGD images: "
        "--retrain_adversarial_*). With several, retrain_modes.json/.png compare them.",
        **fv,
    )
    flags.DEFINE_boolean(
        name="retrain_stress",
        default=False,
        help="After the rounds, the stress test (--stress_*) on the starting model (round_0) "
        "and every mode's last model: backworking from uniform and Gaussian noise, zeros and "
        "other classes' test digits, rubbish images, PGD accuracy and targeted PGD; written to "
        "<output_dir>/retrain/stress.json and stress.png, every finished part kept in "
        "retrain/stress/ (--retrain_resume continues it).",
        **fv,
    )
    spine.define_config_flags(StressConfig, STRESS_PREFIX, flag_values)
    _define_validators(flag_values)


def _define_validators(flag_values: flags.FlagValues) -> None:
    """The checks of the mode list and of flags together."""
    fv = {"flag_values": flag_values}

    @flags.validator(
        "retrain_mode",
        message=f"--retrain_mode must be one or more of {', '.join(MODES)}, each once",
        **fv,
    )
    def _modes(values):
        return bool(values) and set(values) <= set(MODES) and len(set(values)) == len(values)

    @flags.multi_flags_validator(
        ["retrain_rounds", "retrain_resume", "retrain_stress"],
        message="--retrain_resume needs --retrain_rounds >= 1 (the rounds to reach) or "
        "--retrain_stress (the stress test to continue)",
        **fv,
    )
    def _resume_needs_rounds(values):
        return (
            values["retrain_rounds"] > 0 or values["retrain_stress"] or not values["retrain_resume"]
        )

    if "backwork_model" not in flag_values:  # only run_backwork.py chooses the model
        return

    @flags.multi_flags_validator(
        ["retrain_rounds", "backwork_model"],
        message="--retrain_rounds needs --backwork_model=mnist_cnn: retraining needs the "
        "model's training data (--dataset), which an ImageNet --backwork_model does not have",
        **fv,
    )
    def _needs_training_data(values):
        return values["retrain_rounds"] == 0 or values["backwork_model"] == "mnist_cnn"

    @flags.multi_flags_validator(
        ["retrain_stress", "backwork_model"],
        message="--retrain_stress needs --backwork_model=mnist_cnn: its backworking runs "
        "need the model's training data (--dataset)",
        **fv,
    )
    def _stress_needs_training_data(values):
        return not values["retrain_stress"] or values["backwork_model"] == "mnist_cnn"


def retrain_configs(flag_values: flags.FlagValues = flags.FLAGS) -> tuple[RetrainConfig, ...]:
    """Converts the parsed ``--retrain_*`` flags into one ``RetrainConfig`` per mode of
    ``--retrain_mode``.

    Raises:
        ValueError: a value the config refuses (the message names its flag).
    """
    return tuple(
        spine.config_from_flags(RetrainConfig, PREFIX, flag_values, mode=mode)
        for mode in flag_values.retrain_mode
    )


def stress_config(flag_values: flags.FlagValues = flags.FLAGS) -> StressConfig:
    """Converts the parsed ``--stress_*`` flags into a ``StressConfig``.

    Raises:
        ValueError: a value the config refuses (the message names its flag).
    """
    return spine.config_from_flags(StressConfig, STRESS_PREFIX, flag_values)
