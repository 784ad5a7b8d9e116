"""Figures of attacks and ImageNet experiments: accuracy against eps, attack
examples, gradient projection, the noise survey and FGSM on photos."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

import tfool.plots._grid as _grid


def accuracy_vs_eps(
    eps_values: Sequence[float],
    curves: dict[str, Sequence[float]],
    clean_accuracy: float | None = None,
    title: str | None = None,
) -> plt.Figure:
    """Accuracy against attack size, one curve per method.

    Args:
        eps_values: The attack sizes (x axis).
        curves: ``{method: [accuracy at each eps]}``, accuracies in [0, 1].
        clean_accuracy: Optional dashed line at the unperturbed accuracy.
        title: Optional figure title.

    Returns:
        The matplotlib figure.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, acc in curves.items():
        if len(acc) != len(eps_values):
            raise ValueError(
                f"curve {method!r} has {len(acc)} points but there are {len(eps_values)} eps values"
            )
        ax.plot(eps_values, 100 * np.asarray(acc, float), marker="o", label=method)
    if clean_accuracy is not None:
        ax.axhline(100 * clean_accuracy, color="gray", linestyle="--", linewidth=1, label="clean")
    ax.set_xlabel("eps (L-infinity, pixel range [0, 1])")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _grid._finish(fig)


def attack_examples(
    originals: np.ndarray,
    adversarials: dict[str, np.ndarray],
    titles: dict[str, Sequence[Sequence[str]]],
    original_titles: Sequence[str],
    eps: float,
    suptitle: str | None = None,
) -> plt.Figure:
    """Original, magnified perturbation and adversarial image, per method, one row per image.

    The perturbation ``adv - x`` is drawn scaled by ``1 / eps`` around mid-grey (black
    ``-eps``, white ``+eps``), as the post magnifies its gradient-sign images.

    Args:
        originals: Images ``[N, H, W(, C)]`` in [0, 1].
        adversarials: ``{method: images [N, H, W(, C)]}``.
        titles: ``{method: [[perturbation title, adversarial title] per image]}``: the
            model's answers on the perturbation itself and on the adversarial image.
        original_titles: One title per original (e.g. label and confidence).
        eps: The attack size (the perturbation's scale).
        suptitle: Optional figure title.

    Returns:
        The matplotlib figure.
    """
    from tfool.attacks import ATTACKS  # the attacks' names in figures

    originals = np.asarray(originals, np.float32)
    scale = eps if eps > 0 else 1.0
    columns, grid_titles = [originals], [[f"original\n{t}" for t in original_titles]]
    for method, adv in adversarials.items():
        delta = np.asarray(adv, np.float32) - originals
        name = ATTACKS[method].label if method in ATTACKS else method
        columns += [np.clip(0.5 + 0.5 * delta / scale, 0, 1), adv]
        grid_titles += [
            [f"{name} δ\n{t[0]}" for t in titles[method]],
            [f"{name}\n{t[1]}" for t in titles[method]],
        ]
    images = np.stack(columns, axis=1)
    grid = [[grid_titles[c][r] for c in range(len(columns))] for r in range(len(originals))]
    return _grid.image_grid(images, titles=grid, suptitle=suptitle, cell_size=1.6)


def _top5_text(predictions, width: int = 22) -> str:
    lines = []
    for pred in predictions:
        name = pred.name if len(pred.name) <= width else pred.name[: width - 1] + "~"
        lines.append(f"{name} {pred.probability:.3g}")
    return "\n".join(lines)


def projection_grid(result, magnify: float | None = None, cell_size: float = 2.4) -> plt.Figure:
    """Original, magnified perturbation and result for every target of a projection.

    One row per target: the start image with its top-5, the perturbation shown as
    ``128 + magnify * delta`` (clipped to 0-255), and the projected image with its top-5.

    Args:
        result: A ``tfool.projection.ProjectionResult``.
        magnify: Perturbation gain; ``None`` scales the largest change to 127 grey levels.
        cell_size: Inches per image.

    Returns:
        The figure.
    """
    rows = len(result.targets)
    largest = float(np.abs(result.perturbations).max())
    if magnify is None:
        magnify = 127.0 / largest if largest > 0 else 1.0
    fig, axes = plt.subplots(
        rows, 3, figsize=(3 * cell_size + 0.6, rows * (cell_size + 1.3) + 0.5), squeeze=False
    )
    before = _top5_text(result.top5_before)
    for r in range(rows):
        delta = np.clip(128.0 + magnify * result.perturbations[r], 0, 255)
        panels = (
            (result.original, "original", before),
            (
                delta,
                f"perturbation x{magnify:.3g}\nL-inf {result.linf[r]:.2f}, L2 {result.l2[r]:.1f}",
                "",
            ),
            (
                result.images[r],
                f"-> {result.target_names[r]}\np = {result.final_probs[r]:.3g}",
                _top5_text(result.top5_after[r]),
            ),
        )
        for c, (image, title, text) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(np.clip(image, 0, 255).astype(np.uint8), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
            ax.set_xlabel(text, fontsize=7, family="monospace", ha="center")
    fig.suptitle(f"{result.model_name}: gradient projection")
    fig.tight_layout()
    return fig


def survey_histogram(survey, top: int = 20, bins: int = 30) -> plt.Figure:
    """One model's noise survey: the labels it gives (top ``top``) and its confidences.

    Args:
        survey: A ``tfool.survey.ModelSurvey``.
        top: How many labels to show; the rest are summed into one bar.
        bins: Bins of the confidence histogram.

    Returns:
        The figure.
    """
    shown = list(survey.histogram[:top])
    rest = sum(count for _, _, count in survey.histogram[top:])
    names = [f"{name} ({index})" for index, name, _ in shown]
    counts = [count for _, _, count in shown]
    if rest:
        names.append(f"{len(survey.histogram) - top} other labels")
        counts.append(rest)
    height = max(3.0, 0.28 * len(names) + 1.2)
    fig, (ax_labels, ax_conf) = plt.subplots(
        1, 2, figsize=(11, height), gridspec_kw={"width_ratios": [3, 2]}
    )
    y = np.arange(len(names))
    ax_labels.barh(y, counts, color="tab:blue")
    ax_labels.set_yticks(y)
    ax_labels.set_yticklabels(names, fontsize=8)
    ax_labels.invert_yaxis()
    ax_labels.set_xlabel("noise images given this top-1 label")
    ax_labels.set_title(f"{survey.name}: {len(survey.histogram)} distinct top-1 label(s)")
    ax_conf.hist(survey.confidences, bins=bins, color="tab:orange")
    ax_conf.set_xlabel("top-1 confidence")
    ax_conf.set_ylabel("images")
    s = survey.stats
    ax_conf.set_title(f"mean {s['mean']:.3f}, std {s['std']:.3f}, max {s['max']:.3f}", fontsize=9)
    fig.tight_layout()
    return fig


def photo_fgsm_grid(found, magnify: float | None = None, cell_size: float = 2.0) -> plt.Figure:
    """FGSM on photos: each photo, its FGSM image at every eps and the largest perturbation.

    Args:
        found: A ``tfool.experiments.PhotoReport``.
        magnify: Gain of the perturbation column (default ``127 / eps``: +-eps to the
            full range around mid-grey).
        cell_size: Inches per image.

    Returns:
        The matplotlib figure.
    """
    eps_values = list(found.adversarial)
    top = max(eps_values)
    gain = magnify if magnify is not None else 127.0 / top
    rows, titles = [], []
    for k, photo in enumerate(found.names):
        row = [found.pixels[k] / 255.0]
        head = found.report["photos"][k]["top5"][0]
        row_titles = [f"{photo}\n{head['name']} ({100 * head['probability']:.0f}%)"]
        for eps, attacked in zip(eps_values, found.report["photos"][k]["fgsm"]):
            row.append(found.adversarial[eps][k] / 255.0)
            row_titles.append(
                f"eps {eps:g}/255\n{attacked['top1']} ({100 * attacked['top1_probability']:.0f}%)"
            )
        delta = found.adversarial[top][k] - found.pixels[k]
        row.append(np.clip((128.0 + gain * delta) / 255.0, 0, 1))
        row_titles.append(f"perturbation at {top:g}/255\nx{gain:.0f}")
        rows.append(row)
        titles.append(row_titles)
    return _grid.image_grid(
        np.asarray(rows, np.float32),
        titles=titles,
        suptitle=f"FGSM on {found.model_name}: away from each photo's own top-1 class",
        cell_size=cell_size,
    )
