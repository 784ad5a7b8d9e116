"""The attack table ``ATTACKS``: every attack, the hyperparameters it takes, its name in
figures; ``attack`` runs one by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from tfool.attacks._checks import ModelFn
from tfool.attacks._iterative import bim, pgd
from tfool.attacks._one_step import fgm_l2, fgsm, normalized_gradient, random_sign_noise

#: The methods ``sweep`` runs by default (the post's two single steps, BIM and the control).
DEFAULT_METHODS = ("fgsm", "normalized_gradient", "bim", "random")
#: The hyperparameters that ``sweep`` and ``tfool.experiments.AttackExperimentConfig`` set
#: for every attack at once (each is also a keyword of ``sweep`` and a field of the config):
#: ``attack`` passes each to the attacks whose ``AttackSpec.hyperparameters`` list it and
#: drops it for the others.
SWEEP_HYPERPARAMETERS = ("steps", "step_size", "seed")


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack of the registry.

    Attributes:
        name: Its name in ``METHODS``, flags and reports.
        fn: The attack: ``fn(model_fn, x, eps, y, **options)`` (``y`` the only optional
            positional argument, the options keyword-only), or ``fn(x, eps, **options)``
            when it does not use the model.
        hyperparameters: Which of ``SWEEP_HYPERPARAMETERS`` (``steps``, ``step_size``,
            ``seed``) and ``norm`` it takes; ``attack`` drops the sweep hyperparameters it
            does not take.
        direction: For a single gradient step, its direction (``sign``, ``l2``, ``max``):
            ``sweep`` then reuses one gradient pass for every eps.
        uses_model: False for a control that ignores the model (it takes only its
            hyperparameters and the clip range).
        short_name: Its name in figure titles.
    """

    name: str
    fn: Callable
    hyperparameters: tuple[str, ...] = ()
    direction: str | None = None
    uses_model: bool = True
    short_name: str = ""

    @property
    def label(self) -> str:
        """The name figures show."""
        return self.short_name or self.name


#: Every attack, by name: the one place a new attack is registered.
ATTACKS = {
    spec.name: spec
    for spec in (
        AttackSpec("fgsm", fgsm, direction="sign"),
        AttackSpec("fgm_l2", fgm_l2, direction="l2", short_name="fgm L2"),
        AttackSpec(
            "normalized_gradient", normalized_gradient, direction="max", short_name="g/max|g|"
        ),
        AttackSpec("bim", bim, hyperparameters=("steps", "step_size", "norm")),
        AttackSpec("pgd", pgd, hyperparameters=("steps", "step_size", "seed", "norm")),
        AttackSpec("random", random_sign_noise, hyperparameters=("seed",), uses_model=False),
    )
}
#: Attack names accepted by ``attack`` and ``sweep``.
METHODS = tuple(ATTACKS)


def attack_spec(method: str) -> AttackSpec:
    """The registry entry of ``method``.

    Raises:
        ValueError: an unknown ``method``.
    """
    if method not in ATTACKS:
        raise ValueError(f"method={method!r} is not one of {list(METHODS)}")
    return ATTACKS[method]


def attack(
    method: str,
    model_fn: ModelFn,
    x: np.ndarray,
    eps: float,
    y: np.ndarray | int | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Runs the attack named ``method`` (one of ``METHODS``) with keyword options.

    The sweep hyperparameters (``SWEEP_HYPERPARAMETERS``: ``steps``, ``step_size``,
    ``seed``) are dropped for the methods that do not take them
    (``AttackSpec.hyperparameters``); a control that ignores the model (``random``) gets
    only its hyperparameters and ``clip_min``/``clip_max``, not ``y``.

    Args:
        method: A name from ``METHODS``.
        model_fn: A callable from images to logits (or probabilities).
        x: Images ``[N, ...]`` inside the clip range.
        eps: The attack's size, >= 0.
        y: Integer class indices ``[N]``, or one integer for every image, as in ``fgsm``;
            ``None``: the model's predictions. The last argument that may be positional.
        **kwargs: The attack's keyword options (``targeted``, ``clip_min``, ``clip_max``,
            ``steps``, ``step_size``, ``seed``, ``norm``, ...).

    Returns:
        The adversarial images, float32, the shape of ``x``.

    Raises:
        ValueError: an unknown ``method``, or what the attack raises.
    """
    spec = attack_spec(method)
    if not spec.uses_model:
        names = (*spec.hyperparameters, "clip_min", "clip_max")
        return spec.fn(x, eps, **{k: kwargs[k] for k in names if k in kwargs})
    kwargs = {
        k: v
        for k, v in kwargs.items()
        if k not in SWEEP_HYPERPARAMETERS or k in spec.hyperparameters
    }
    return spec.fn(model_fn, x, eps, y, **kwargs)
