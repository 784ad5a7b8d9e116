"""Retraining flags (prefix ``retrain_``), converted once into a ``RetrainConfig``."""

from __future__ import annotations

from absl import flags

from tfool.retrain import MODES, RetrainConfig
from tfool.stress import STARTS, StressConfig

#: The round count of the retraining example in docs/retraining.md (``--retrain_rounds=2``).
RECOMMENDED_ROUNDS = 2


_D = RetrainConfig()
_S = StressConfig()


def define_retrain_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the ``--retrain_*`` flags."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_integer(
        name="retrain_rounds",
        default=_D.rounds,
        lower_bound=0,
        help="Rounds of backwork, augment and retrain after the usual backwork; 0 (default) "
        f"retrains nothing, {RECOMMENDED_ROUNDS} is the example in docs/retraining.md; >= 0.",
        **fv,
    )
    flags.DEFINE_list(
        name="retrain_mode",
        default=[_D.mode],
        help="Comma-separated modes, each run in <output_dir>/retrain/<mode>/ from the same "
        "model: uniform (negatives get 1/C for each of the C classes, the MNIST post), extra_class "
        "(a new 'negative' class, Nguyen et al. 2015), control (the same rounds with nothing "
        "added), adversarial (nothing added, every batch replaced by its FGSM/PGD images: "
        "--retrain_adversarial_*). With several, retrain_modes.json/.png compare them.",
        **fv,
    )
    flags.DEFINE_boolean(
        name="retrain_from_scratch",
        default=_D.from_scratch,
        help="Train a freshly initialised model every round instead of going on from the "
        "previous round's weights (then raise --retrain_epochs to --train_epochs).",
        **fv,
    )
    flags.DEFINE_boolean(
        name="retrain_resume",
        default=_D.resume,
        help="Continue the rounds finished in <output_dir>/retrain/<mode>/, made with the same "
        "flags, model weights and data (checked before any work, every difference named). "
        "Without it a folder with finished rounds is refused, never started afresh over.",
        **fv,
    )
    flags.DEFINE_integer(
        name="retrain_epochs",
        default=_D.epochs,
        lower_bound=1,
        help="Training epochs per round; >= 1.",
        **fv,
    )
    flags.DEFINE_integer(
        name="retrain_num_zero",
        default=_D.num_zero,
        lower_bound=0,
        help="All-zero images added with the negatives every round; >= 0.",
        **fv,
    )
    flags.DEFINE_integer(
        name="retrain_num_noise",
        default=_D.num_noise,
        lower_bound=0,
        help="Uniform-noise images (pixels in [0, 1]) added every round; >= 0.",
        **fv,
    )
    flags.DEFINE_integer(
        name="retrain_max_num_steps",
        default=_D.max_num_steps,
        lower_bound=1,
        help="Step limit of every round's backwork run (the smaller of this and "
        "--backwork_max_num_steps), to bound the run time; >= 1.",
        **fv,
    )
    flags.DEFINE_list(
        name="retrain_fgsm_eps",
        default=[f"{e:g}" for e in _D.fgsm_eps],
        help="Comma-separated L-infinity FGSM steps (pixel range [0, 1]) whose test accuracy "
        "every round records; each in [0, 1].",
        **fv,
    )
    flags.DEFINE_integer(
        name="retrain_fooling_budget",
        default=_D.fooling_budget,
        lower_bound=1,
        help="Step budget of every round's fooling measurement: fresh noise (a fixed seed) "
        f"backworked until p >= {_D.fooling_threshold} or the budget; >= 1.",
        **fv,
    )
    flags.DEFINE_integer(
        name="retrain_fooling_examples",
        default=_D.fooling_examples,
        lower_bound=1,
        help="Rows per label of the fooling measurement; >= 1.",
        **fv,
    )
    flags.DEFINE_integer(
        name="retrain_fooling_seed",
        default=_D.fooling_seed,
        lower_bound=0,
        help="Seed of the fooling measurement's noise, the same in every round and mode; >= 0.",
        **fv,
    )

    flags.DEFINE_float(
        name="retrain_adversarial_eps",
        default=_D.adversarial_eps,
        lower_bound=0.0,
        upper_bound=1.0,
        help="--retrain_mode=adversarial: L-infinity radius (pixel range [0, 1]) of the attack "
        "every training batch is replaced by; in (0, 1].",
        **fv,
    )
    flags.DEFINE_float(
        name="retrain_adversarial_step",
        default=_D.adversarial_step,
        lower_bound=0.0,
        help="Its step size (Wong et al. 2020: 1.25 x eps for FGSM from a random start); > 0.",
        **fv,
    )
    flags.DEFINE_integer(
        name="retrain_adversarial_steps",
        default=_D.adversarial_steps,
        lower_bound=1,
        help="Its steps: 1 is FGSM from a random start (Wong et al. 2020), more is PGD from a "
        "random start (Madry et al. 2018); >= 1.",
        **fv,
    )
    flags.DEFINE_integer(
        name="retrain_adversarial_epochs",
        default=_D.adversarial_epochs,
        lower_bound=1,
        help="--retrain_mode=adversarial: training epochs per round (default: --retrain_epochs); "
        ">= 1.",
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
    flags.DEFINE_list(
        name="stress_budgets",
        default=[str(b) for b in _S.budgets],
        help="Comma-separated step budgets at which the stress test reads the share of rows "
        f"past p >= {_S.threshold} (one run of the largest per start); integers >= 1.",
        **fv,
    )
    flags.DEFINE_list(
        name="stress_starts",
        default=list(_S.starts),
        help=f"Starting points of the stress test's backworking runs, from {', '.join(STARTS)}.",
        **fv,
    )
    flags.DEFINE_integer(
        name="stress_examples",
        default=_S.examples,
        lower_bound=1,
        help="Rows per label of every stress-test backworking run; >= 1.",
        **fv,
    )
    flags.DEFINE_list(
        name="stress_pgd_eps",
        default=[f"{e:g}" for e in _S.pgd_eps],
        help=f"L-infinity radii of the untargeted PGD accuracy ({_S.pgd_steps} steps of "
        f"{_S.pgd_step_size:g} from a random start); each in [0, 1].",
        **fv,
    )
    flags.DEFINE_integer(
        name="stress_attack_examples",
        default=_S.attack_examples,
        lower_bound=1,
        help="Test images the PGD attacks run on (a seeded subset); >= 1.",
        **fv,
    )
    flags.DEFINE_integer(
        name="stress_reference_size",
        default=_S.reference_size,
        lower_bound=1,
        help="At most this many training images per label in the reference sets of the "
        "stress test's backworking runs (default: --backwork_reference_size); the step time "
        "grows with it; >= 1.",
        **fv,
    )
    flags.DEFINE_integer(
        name="stress_seed",
        default=_S.seed,
        lower_bound=0,
        help="Seed of the stress test's starts, attacked images, targets and PGD starts; >= 0.",
        **fv,
    )

    @flags.validator(
        "stress_budgets",
        message="--stress_budgets must be distinct comma-separated integers >= 1",
        **fv,
    )
    def _budgets(values):
        try:
            budgets = [int(v) for v in values]
        except ValueError:
            return False
        return bool(budgets) and min(budgets) >= 1 and len(set(budgets)) == len(budgets)

    @flags.validator(
        "stress_starts",
        message=f"--stress_starts must be one or more of {', '.join(STARTS)}, each once",
        **fv,
    )
    def _starts(values):
        return bool(values) and set(values) <= set(STARTS) and len(set(values)) == len(values)

    @flags.validator(
        "stress_pgd_eps",
        message="--stress_pgd_eps must be one or more distinct comma-separated numbers in [0, 1]",
        **fv,
    )
    def _pgd_eps(values):
        return _unit_numbers(values) and len({f"{float(v):g}" for v in values}) == len(values)

    @flags.validator(
        "retrain_mode",
        message=f"--retrain_mode must be one or more of {', '.join(MODES)}, each once",
        **fv,
    )
    def _modes(values):
        return bool(values) and set(values) <= set(MODES) and len(set(values)) == len(values)

    @flags.validator(
        "retrain_fgsm_eps",
        message="--retrain_fgsm_eps must be one or more comma-separated numbers in [0, 1]",
        **fv,
    )
    def _eps(values):
        return _unit_numbers(values)

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

    for name in ("retrain_adversarial_eps", "retrain_adversarial_step"):

        @flags.validator(name, message=f"--{name} must be a number > 0", **fv)
        def _positive(value):
            return value > 0

    if "backwork_model" in flag_values:  # run_backwork.py: only the MNIST CNN has data here

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


def _unit_numbers(values) -> bool:
    """Whether ``values`` are one or more numbers in [0, 1]."""
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return False
    return bool(numbers) and all(0 <= e <= 1 for e in numbers)


def retrain_configs(flag_values: flags.FlagValues = flags.FLAGS) -> tuple[RetrainConfig, ...]:
    """Converts the parsed ``--retrain_*`` flags into one ``RetrainConfig`` per mode."""
    f = flag_values
    return tuple(
        RetrainConfig(
            rounds=f.retrain_rounds,
            mode=mode,
            from_scratch=f.retrain_from_scratch,
            resume=f.retrain_resume,
            epochs=f.retrain_epochs,
            num_zero=f.retrain_num_zero,
            num_noise=f.retrain_num_noise,
            max_num_steps=f.retrain_max_num_steps,
            fgsm_eps=tuple(float(e) for e in f.retrain_fgsm_eps),
            fooling_budget=f.retrain_fooling_budget,
            fooling_examples=f.retrain_fooling_examples,
            fooling_seed=f.retrain_fooling_seed,
            adversarial_eps=f.retrain_adversarial_eps,
            adversarial_step=f.retrain_adversarial_step,
            adversarial_steps=f.retrain_adversarial_steps,
            adversarial_epochs=f.retrain_adversarial_epochs,
        )
        for mode in f.retrain_mode
    )


def stress_config(flag_values: flags.FlagValues = flags.FLAGS) -> StressConfig:
    """Converts the parsed ``--stress_*`` flags into a ``StressConfig``."""
    f = flag_values
    return StressConfig(
        budgets=tuple(int(b) for b in f.stress_budgets),
        starts=tuple(f.stress_starts),
        examples=f.stress_examples,
        pgd_eps=tuple(float(e) for e in f.stress_pgd_eps),
        attack_examples=f.stress_attack_examples,
        seed=f.stress_seed,
        reference_size=f.stress_reference_size,
    )
