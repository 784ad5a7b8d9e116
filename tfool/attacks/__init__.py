"""Gradient attacks on the input: FGSM, FGM-L2, the max-normalised step, BIM/PGD, noise control.

The attack table ``ATTACKS`` (one ``AttackSpec`` per attack: its function, the
hyperparameters it takes, its name in figures), ``attack`` (one attack by name) and ``sweep``
(the robustness table) read it.
"""

from tfool.attacks._checks import DEFAULT_BATCH_SIZE, NORMS, ModelFn
from tfool.attacks._iterative import bim, kurakin_steps, pgd
from tfool.attacks._one_step import (
    fgm,
    fgm_l2,
    fgsm,
    loss_gradient,
    normalized_gradient,
    probabilities,
    random_sign_noise,
)
from tfool.attacks._registry import (
    ATTACKS,
    DEFAULT_METHODS,
    METHODS,
    SWEEP_HYPERPARAMETERS,
    AttackSpec,
    attack,
    attack_spec,
)
from tfool.attacks._sweep import SweepResult, SweepRow, sweep

__all__ = [
    "ATTACKS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_METHODS",
    "METHODS",
    "NORMS",
    "SWEEP_HYPERPARAMETERS",
    "AttackSpec",
    "ModelFn",
    "SweepResult",
    "SweepRow",
    "attack",
    "attack_spec",
    "bim",
    "fgm",
    "fgm_l2",
    "fgsm",
    "kurakin_steps",
    "loss_gradient",
    "normalized_gradient",
    "pgd",
    "probabilities",
    "random_sign_noise",
    "sweep",
]
