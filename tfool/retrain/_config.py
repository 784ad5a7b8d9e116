"""The retraining settings: ``RetrainConfig``, its modes and the rounds' training default."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfool import _tf, models
from tfool.adversarial import AdversarialTraining
from tfool.backwork import BackworkConfig
from tfool.config import setting

#: ``uniform`` and ``extra_class`` add the negatives; ``control`` adds nothing (the same
#: rounds, epochs and seeds), so what differs from it is the negatives' doing;
#: ``adversarial`` adds nothing either but trains on every batch's FGSM/PGD images
#: (``tfool.adversarial``), the defence the adversarial-examples literature trusts.
MODES = ("uniform", "extra_class", "control", "adversarial")


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """How ``retrain_rounds`` retrains and what every round measures.

    Attributes:
        rounds: Retraining rounds of backwork, augment and retrain after round 0 (the
            measured starting model); 0 runs none, 2 is the example in
            docs/retraining.md; >= 0.
        mode: ``uniform`` targets for the negatives (each of the C classes gets 1/C, the
            MNIST post), an ``extra_class`` (a new 'negative' class, Nguyen et al. 2015),
            ``control``: the same rounds with nothing added, or ``adversarial``: nothing
            added, every training batch replaced by its FGSM/PGD images
            (``adversarial_*``).
        from_scratch: Train a freshly initialised model every round instead of going on
            from the previous round's weights (then raise ``epochs`` to the training
            config's epochs).
        resume: Continue the rounds finished in the output folder, which must have been
            made with the same settings, weights and data (``check_folder``; checked
            before any work, every difference named); without it a folder with finished
            rounds is refused, never started afresh over.
        epochs: Training epochs per round, >= 1 (``None``: the training config's).
        num_zero: All-zero images added with the negatives every round (not in
            ``control`` mode); >= 0.
        num_noise: Uniform-noise images (pixels in [0, 1]) added every round (not in
            ``control`` mode); >= 0.
        max_num_steps: Step limit of every round's backwork run, the smaller of this and
            the backworking config's, to bound the run time; >= 1 (``None``: the
            backworking config's).
        fgsm_eps: L-infinity FGSM steps (pixel range [0, 1]) whose test accuracy every
            round records; one or more, each in [0, 1].
        fooling_budget: Step budget of every round's fooling measurement: fresh noise (a
            fixed seed) backworked until the target probability reaches
            ``fooling_threshold`` or the budget; >= 1.
        fooling_examples: Rows per label of the fooling measurement; >= 1.
        fooling_seed: Seed of its initial noise (the same in every round and mode) and of
            the noise images whose confidence every round records; >= 0.
        fooling_threshold: Target probability at which a row counts as fooled, in (0, 1).
        num_noise_probe: Uniform-noise images whose top class probability every round
            records; >= 1.
        adversarial_eps: ``adversarial`` mode: the L-infinity radius (pixel range [0, 1])
            of the attack every training batch is replaced by, in (0, 1].
        adversarial_step: Its step size (Wong et al. 2020: ``1.25 * eps`` for FGSM from a
            random start); > 0.
        adversarial_steps: Its steps: 1 is FGSM from a random start (Wong et al. 2020),
            more is PGD from a random start (Madry et al. 2018); >= 1.
        adversarial_epochs: ``adversarial`` mode: training epochs per round, >= 1
            (``None``: ``epochs``).
    """

    rounds: int = 0
    mode: str = setting("uniform", choices=MODES)
    from_scratch: bool = False
    resume: bool = False
    epochs: int | None = 2
    num_zero: int = 800
    num_noise: int = 800
    max_num_steps: int | None = 150
    fgsm_eps: tuple[float, ...] = (0.1, 0.25)
    fooling_budget: int = 100
    fooling_examples: int = 8
    fooling_seed: int = 1000
    fooling_threshold: float = 0.999
    num_noise_probe: int = 1000
    adversarial_eps: float = 0.3
    adversarial_step: float = 0.375
    adversarial_steps: int = 1
    adversarial_epochs: int | None = None

    def __post_init__(self):
        check_mode(self.mode)
        self._check_adversarial()
        if int(self.rounds) != self.rounds or self.rounds < 0:
            raise ValueError(f"rounds={self.rounds} must be an integer >= 0")
        eps = (self.fgsm_eps,) if np.isscalar(self.fgsm_eps) else tuple(self.fgsm_eps)
        if not eps or not all(_tf.is_finite_number(e) and 0 <= e <= 1 for e in eps):
            raise ValueError(f"fgsm_eps={self.fgsm_eps} must be one or more numbers in [0, 1]")
        object.__setattr__(self, "fgsm_eps", tuple(float(e) for e in eps))
        if not (_tf.is_finite_number(self.fooling_threshold) and 0 < self.fooling_threshold < 1):
            raise ValueError(
                f"fooling_threshold={self.fooling_threshold} must be a number in (0, 1)"
            )
        for name in ("num_zero", "num_noise", "fooling_seed"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(f"{name}={value} must be an integer >= 0")
        for name in ("fooling_budget", "fooling_examples", "num_noise_probe"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name}={value} must be an integer >= 1")
        for name in ("epochs", "max_num_steps", "adversarial_epochs"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name}={value} must be an integer >= 1 or None")

    def _check_adversarial(self) -> None:
        """Refuses ``adversarial_*`` values ``adversarial_training`` could not build."""
        for name in ("adversarial_eps", "adversarial_step"):
            value = getattr(self, name)
            if not (_tf.is_finite_number(value) and value > 0):
                raise ValueError(f"{name}={value} must be a number > 0")
        if self.adversarial_eps > 1:
            raise ValueError(
                f"adversarial_eps={self.adversarial_eps} must be at most 1 (the pixel range "
                "is [0, 1])"
            )
        steps = self.adversarial_steps
        if not _tf.is_finite_number(steps) or int(steps) != steps or steps < 1:
            raise ValueError(f"adversarial_steps={steps} must be an integer >= 1")

    def adversarial_training(self) -> AdversarialTraining:
        """The training attack of ``adversarial`` mode (``adversarial_*``)."""
        return AdversarialTraining(
            eps=self.adversarial_eps, step_size=self.adversarial_step, steps=self.adversarial_steps
        )

    def adversary(self) -> AdversarialTraining | None:
        """What ``models.train`` gets as ``adversary`` in this mode (``None`` but in
        ``adversarial`` mode)."""
        return self.adversarial_training() if self.mode == "adversarial" else None

    def round_configs(
        self, backwork_config: BackworkConfig, train_config: models.TrainConfig
    ) -> tuple[BackworkConfig, models.TrainConfig]:
        """The backworking and training settings every round uses."""
        if self.max_num_steps is not None:
            steps = min(backwork_config.max_num_steps, self.max_num_steps)
            backwork_config = dataclasses.replace(backwork_config, max_num_steps=steps)
        epochs = self.epochs
        if self.mode == "adversarial" and self.adversarial_epochs is not None:
            epochs = self.adversarial_epochs
        if epochs is not None:
            train_config = dataclasses.replace(train_config, epochs=epochs)
        return backwork_config, train_config


#: Training of every round: two epochs from the previous round's weights, else as usual.
DEFAULT_TRAIN_CONFIG = models.TrainConfig(epochs=2)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {MODES}")
