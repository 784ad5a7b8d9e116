"""The robustness sweep: accuracy under every attack at every eps."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfool import _tf
from tfool.attacks._checks import (
    DEFAULT_BATCH_SIZE,
    ModelFn,
    _check_attack,
    _check_eps,
    _check_labels,
    _Checked,
)
from tfool.attacks._one_step import _gradients, probabilities
from tfool.attacks._registry import ATTACKS, DEFAULT_METHODS, METHODS, attack
from tfool.attacks._steps import _apply_step, _resolve


@dataclasses.dataclass(frozen=True)
class SweepRow:
    """One cell of the robustness table.

    Attributes:
        method: The attack.
        eps: Its size.
        accuracy: Fraction of adversarial images classified as their true label.
        changed: Fraction whose predicted class differs from the clean prediction.
        mean_wrong_confidence: Mean top-1 probability of the wrong answers (``None`` if
            there are none).
        target_rate: Fraction classified as the attack's target (targeted sweeps only).
        seconds: Wall time of the attack and its evaluation (single-step methods: applying
            the shared gradient and evaluating).
    """

    method: str
    eps: float
    accuracy: float
    changed: float
    mean_wrong_confidence: float | None
    target_rate: float | None
    seconds: float


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The robustness table of ``sweep``.

    Attributes:
        rows: One ``SweepRow`` per method and eps, methods outermost.
        clean_accuracy: Accuracy on the unperturbed images.
        num_images: Images attacked.
        targeted: Whether the attacks were targeted.
        least_likely: Whether the targets were the least likely classes.
        steps: Iterations of ``bim``/``pgd`` (``None``: Kurakin's rule per eps).
        gradient_seconds: Wall time of the clean pass (predictions and the gradient that
            every single-step method shares; not counted in their rows' ``seconds``).
    """

    rows: tuple[SweepRow, ...]
    clean_accuracy: float
    num_images: int
    targeted: bool
    least_likely: bool
    steps: int | None
    gradient_seconds: float

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods, in order."""
        return tuple(dict.fromkeys(r.method for r in self.rows))

    @property
    def eps_values(self) -> tuple[float, ...]:
        """The eps values, in order."""
        return tuple(dict.fromkeys(r.eps for r in self.rows))

    def accuracy(self, method: str, eps: float) -> float:
        """The accuracy under ``method`` at ``eps``."""
        for row in self.rows:
            if row.method == method and math.isclose(row.eps, eps):
                return row.accuracy
        raise KeyError(f"no row for method={method!r}, eps={eps}")

    def curves(self) -> dict[str, list[float]]:
        """``{method: [accuracy at each eps]}``."""
        return {m: [r.accuracy for r in self.rows if r.method == m] for m in self.methods}

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """A header and rows for CSV output."""
        header = [f.name for f in dataclasses.fields(SweepRow)]
        return header, [[getattr(r, h) for h in header] for r in self.rows]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        out = dataclasses.asdict(self)
        out["rows"] = [dataclasses.asdict(r) for r in self.rows]
        out.update(methods=list(self.methods), eps_values=list(self.eps_values))
        return out


def _row(method, eps, probs, labels, clean_pred, target, seconds) -> SweepRow:
    pred = probs.argmax(-1)
    wrong = pred != labels
    conf = probs.max(-1)
    return SweepRow(
        method=method,
        eps=float(eps),
        accuracy=float(np.mean(~wrong)),
        changed=float(np.mean(pred != clean_pred)),
        mean_wrong_confidence=float(conf[wrong].mean()) if wrong.any() else None,
        target_rate=None if target is None else float(np.mean(pred == target)),
        seconds=float(seconds),
    )


def sweep(
    model_fn: ModelFn,
    x: np.ndarray,
    labels: np.ndarray,
    eps_values: Sequence[float],
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    y: np.ndarray | int | None = None,
    targeted: bool = False,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    least_likely: bool = False,
    steps: int | None = None,
    step_size: float | None = None,
    seed: int = 0,
    from_logits: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    strategy: tf.distribute.Strategy | None = None,
    callback: Callable[[SweepRow], None] | None = None,
) -> SweepResult:
    """Accuracy of the model under every method at every eps (the robustness table).

    The single-step methods share one gradient pass over ``x`` (their gradient does not
    depend on eps); ``bim`` and ``pgd`` run once per eps; eps 0 is the clean result.
    Everything after ``methods`` is keyword-only (``labels`` and ``y`` are easy to confuse).

    Args:
        model_fn: A callable from images to logits (or probabilities).
        x: Images ``[N, ...]`` inside ``[clip_min, clip_max]``.
        labels: True class indices ``[N]`` (accuracy is measured against them).
        eps_values: The attack sizes, each >= 0.
        methods: Names from ``METHODS``.
        y: The attack's labels or targets: integer class indices ``[N]`` or one integer
            for every image, as in ``fgsm`` (``None``: the model's predictions).
        targeted: Move toward ``y``.
        clip_min: Lowest allowed pixel value.
        clip_max: Highest allowed pixel value.
        least_likely: Target each image's least likely class.
        steps: ``bim``/``pgd`` iterations (``None``: Kurakin's rule).
        step_size: ``bim``/``pgd`` step (``None``: see ``bim``).
        seed: Seed of the random control and of the PGD start.
        from_logits: Whether ``model_fn`` returns logits (``False``: probabilities;
            ``None``: read from a Keras model's graph, whose final softmax is stripped).
        batch_size: Images per compiled step.
        strategy: Optional ``tf.distribute`` strategy.
        callback: Called with every finished ``SweepRow`` (progress reports).

    Returns:
        A ``SweepResult``.

    Raises:
        ValueError: an unknown or repeated method, an empty or negative eps list, bad
            labels, or what the attacks raise.
    """
    methods, eps_values = _check_methods_and_eps(methods, eps_values)
    c = _check_attack(model_fn, x, 0.0, y, targeted, least_likely, clip_min, clip_max, batch_size)
    labels = _check_sweep_labels_and_steps(model_fn, c, labels, steps)

    start = time.perf_counter()
    model_fn, from_logits = _resolve(model_fn, from_logits, c.x)
    grad, clean = _gradients(model_fn, c, from_logits, strategy)
    clean_pred = clean.argmax(-1)
    target = None
    if c.targeted:
        target = c.y if c.y is not None else clean.argmin(-1)
    grad_seconds = time.perf_counter() - start
    options = dict(targeted=targeted, clip_min=clip_min, clip_max=clip_max)
    options.update(least_likely=least_likely, from_logits=from_logits, strategy=strategy)
    run = _Run(
        model_fn,
        c,
        grad,
        clean,
        labels,
        clean_pred,
        target,
        options=dict(y=c.y, **options, batch_size=c.batch_size),
        hyperparameters=dict(steps=steps, step_size=step_size, seed=seed),
    )
    rows = []
    for method in methods:
        for eps in eps_values:
            row = _sweep_row(run, method, eps)
            rows.append(row)
            if callback is not None:
                callback(row)
    return SweepResult(
        rows=tuple(rows),
        clean_accuracy=float(np.mean(clean_pred == labels)),
        num_images=len(c.x),
        targeted=c.targeted,
        least_likely=bool(least_likely),
        steps=None if steps is None else int(steps),
        gradient_seconds=grad_seconds,
    )


def _check_methods_and_eps(
    methods: Sequence[str], eps_values: Sequence[float]
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The sweep's methods and eps values as tuples, refused when unknown, repeated or empty."""
    methods = tuple(methods)
    bad = [m for m in methods if m not in METHODS]
    if not methods or bad or len(set(methods)) != len(methods):
        raise ValueError(f"methods={list(methods)} must be distinct names from {list(METHODS)}")
    eps_values = tuple(_check_eps(e, "eps_values entry") for e in eps_values)
    if not eps_values:
        raise ValueError("eps_values is empty; expected at least one eps >= 0")
    return methods, eps_values


def _check_sweep_labels_and_steps(model_fn, c: _Checked, labels, steps) -> np.ndarray:
    """The true labels as class indices of the model, after which ``steps`` is checked."""
    num_classes = _tf.num_classes(model_fn, c.x)
    labels = _check_labels(labels, len(c.x), num_classes, name="labels")
    if steps is not None and (int(steps) != steps or steps < 0):
        raise ValueError(f"steps={steps} must be an integer >= 0 (or None)")
    return labels


@dataclasses.dataclass(frozen=True, eq=False)
class _Run:
    """What every cell of one sweep shares: the clean pass and the attacks' options."""

    model_fn: Any
    checked: _Checked
    grad: np.ndarray
    clean: np.ndarray
    labels: np.ndarray
    clean_pred: np.ndarray
    target: np.ndarray | None
    options: dict
    hyperparameters: dict


def _sweep_row(run: _Run, method: str, eps: float) -> SweepRow:
    """One cell: ``method`` at ``eps`` (the clean result at eps 0), timed."""
    spec = ATTACKS[method]
    options = run.options
    t0 = time.perf_counter()
    if eps == 0:
        probs = run.clean
    else:
        if spec.direction is not None:  # the shared gradient, one step
            x_adv = _apply_step(
                run.checked.x,
                run.grad,
                eps,
                spec.direction,
                run.checked.targeted,
                options["clip_min"],
                options["clip_max"],
            ).numpy()
        else:
            x = run.checked.x
            x_adv = attack(method, run.model_fn, x, eps, **run.hyperparameters, **options)
        probs = probabilities(
            run.model_fn,
            x_adv,
            from_logits=options["from_logits"],
            batch_size=options["batch_size"],
            strategy=options["strategy"],
        )
    seconds = time.perf_counter() - t0
    return _row(method, eps, probs, run.labels, run.clean_pred, run.target, seconds)
