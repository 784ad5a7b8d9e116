"""Figures: image grids, curves and heat maps (the only tfool module that touches matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _as_2d(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def image_grid(
    images: np.ndarray,
    titles: Sequence[Sequence[str]] | None = None,
    row_labels: Sequence[str] | None = None,
    suptitle: str | None = None,
    cmap: str = "gray",
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cell_size: float = 1.25,
) -> plt.Figure:
    """A grid of images, one row per entry of the first axis.

    Args:
        images: ``[rows, cols, H, W]`` or ``[rows, cols, H, W, C]`` (C = 1 or 3).
        titles: Optional ``[rows][cols]`` titles (e.g. target probabilities).
        row_labels: Optional label written left of each row.
        suptitle: Optional figure title.
        cmap: Colour map for single-channel images.
        vmin: Lower end of the colour scale (``None``: per image).
        vmax: Upper end of the colour scale.
        cell_size: Inches per image.

    Returns:
        The matplotlib figure (the caller saves it with ``tfool.io.save_figure``).
    """
    images = np.asarray(images)
    if images.ndim < 4:
        raise ValueError(f"images have shape {images.shape}, expected [rows, cols, H, W(, C)]")
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * cell_size + 0.6, rows * (cell_size + 0.25) + 0.4), squeeze=False
    )
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(_as_2d(images[r, c]), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if titles is not None:
                ax.set_title(titles[r][c], fontsize=8)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=10)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def close(fig: plt.Figure) -> None:
    """Frees a figure's memory."""
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# Backworking (issue 3)
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# Gradient attacks (issue 4)
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# ImageNet projection and noise survey (issue 5)
# ----------------------------------------------------------------------------------------


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
            (delta, f"perturbation x{magnify:.3g}\nmax |change| {result.linf[r]:.2f}", ""),
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


# ----------------------------------------------------------------------------------------
# Retraining (issue 6)
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# Attribution heat maps (issue 7)
# ----------------------------------------------------------------------------------------
